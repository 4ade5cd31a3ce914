// Catalogue page: filter menus apply at once; a thumbnail that cannot load shows a placeholder instead.
const form = document.getElementById("catalogue-form");

form?.querySelectorAll("select, input[type=date]").forEach((control) => {
  control.addEventListener("change", () => {
    if (control.name === "project") form.querySelector('select[name="subject"]')?.remove();  // subjects belong to one project
    form.requestSubmit();
  });
});

document.querySelectorAll("#catalogue-grid .thumb img").forEach((img) => {
  const fail = () => {
    const placeholder = document.createElement("span");
    placeholder.className = "placeholder";
    placeholder.textContent = "no preview";
    img.replaceWith(placeholder);
  };
  if (img.complete && img.naturalWidth === 0) fail();
  else img.addEventListener("error", fail);
});
