// Search page: "/" focuses the box, ↓/↑ move through the results, filter menus apply at once.
const form = document.getElementById("search-form");
const box = form?.querySelector('input[name="q"]');
const hits = () => [...document.querySelectorAll("#search-results .search-hit")];

document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
  if (event.key === "/" && !typing) {
    event.preventDefault();
    box?.focus();
    box?.select();
    return;
  }
  if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
  if (typing && document.activeElement !== box) return;
  const list = hits();
  if (!list.length) return;
  const at = list.indexOf(document.activeElement);
  const next = event.key === "ArrowDown" ? Math.min(at + 1, list.length - 1) : at - 1;
  event.preventDefault();
  (next < 0 ? box : list[next])?.focus();
});

form?.querySelectorAll(".search-filters select, .search-filters input[type=date]").forEach((control) => {
  control.addEventListener("change", () => {
    form.querySelector('input[name="offset"]')?.remove();
    form.requestSubmit();
  });
});
