"""Provenance of a result as W3C PROV-JSON: inputs with checksums, method and parameters, code, people, times, outputs."""

from __future__ import annotations

import functools
import json
import platform
import subprocess
from datetime import datetime
from importlib import metadata
from pathlib import Path

#: Libraries whose versions can change a result; recorded with every one.
RECORDED_LIBRARIES = ("numpy", "scipy", "scikit-image", "scikit-learn", "zarr", "numcodecs", "tifffile", "dask",
                      "imagecodecs", "pillow")
_REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "https://tilescope.org/ns/prov#"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The source tree's commit (with "+dirty" when it has uncommitted changes), or "unknown"."""
    try:
        commit = subprocess.run(["git", "-C", str(_REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def software_versions() -> dict:
    return {"tilescope": package_version("tilescope"), "git_commit": git_commit(),
            "python": platform.python_version(), **{name: package_version(name) for name in RECORDED_LIBRARIES}}


def _time(value: datetime | None) -> dict | None:
    return {"$": value.isoformat(), "type": "xsd:dateTime"} if value is not None else None


def _literal(value):
    """PROV attribute values are plain literals: nested structures go in as JSON text."""
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True)


def _attributes(prefix: str, values: dict) -> dict:
    return {f"{prefix}:{key}": _literal(value) for key, value in values.items() if value is not None}


def build_provenance(*, job: dict, dataset: dict, user: dict | None, method: str, params: dict,
                     outputs: dict[str, dict], resources: dict, software: dict | None = None) -> dict:
    """The PROV-JSON document of one analysis job.

    `job`: id, queued/started/ended (datetimes), host. `dataset`: id, name, original_sha256,
    original_filename, pyramid_path, pyramid_checksum. `outputs`: name → {sha256, bytes}.
    """
    software = software or software_versions()
    activity = f"ts:job-{job['id']}"
    pyramid = f"ts:pyramid-{dataset['id']}"
    original = f"ts:original-{dataset['original_sha256']}"
    agent = f"ts:software-tilescope-{software['tilescope']}"
    document = {
        "prefix": {"ts": NAMESPACE, "xsd": "http://www.w3.org/2001/XMLSchema#"},
        "entity": {
            original: {"prov:type": "ts:OriginalFile", "prov:label": dataset["original_filename"],
                       "ts:sha256": dataset["original_sha256"]},
            pyramid: {"prov:type": "ts:Pyramid", "prov:label": dataset["name"], "ts:dataset": dataset["id"],
                      "ts:path": dataset["pyramid_path"], "ts:checksum": dataset["pyramid_checksum"]},
        },
        "activity": {activity: {"prov:type": "ts:Segmentation", "prov:startTime": _time(job["started"])["$"],
                                "prov:endTime": _time(job["ended"])["$"],
                                **_attributes("ts", {"method": method, "parameters": params,
                                                     "queuedTime": job["queued"].isoformat(), "host": job["host"],
                                                     **resources})}},
        "agent": {agent: {"prov:type": "prov:SoftwareAgent", **_attributes("ts", software)}},
        "used": {"_:used-pyramid": {"prov:activity": activity, "prov:entity": pyramid}},
        "wasDerivedFrom": {"_:pyramid-from-original": {"prov:generatedEntity": pyramid, "prov:usedEntity": original}},
        "wasAssociatedWith": {"_:run-by-software": {"prov:activity": activity, "prov:agent": agent}},
        "wasGeneratedBy": {},
    }
    if user is not None:
        person = f"ts:user-{user['id']}"
        document["agent"][person] = {"prov:type": "prov:Person", "prov:label": user["name"], "ts:email": user["email"]}
        document["wasAssociatedWith"]["_:requested-by"] = {"prov:activity": activity, "prov:agent": person}
    for index, (name, output) in enumerate(sorted(outputs.items())):
        entity = f"ts:output-{job['id']}-{index}"
        document["entity"][entity] = {"prov:type": "ts:Output", "prov:label": name, "ts:sha256": output["sha256"],
                                      "ts:bytes": output["bytes"]}
        document["wasGeneratedBy"][f"_:generated-{index}"] = {"prov:entity": entity, "prov:activity": activity}
        document["wasDerivedFrom"][f"_:derived-{index}"] = {"prov:generatedEntity": entity, "prov:usedEntity": pyramid}
    return document


def provenance_digest(*, method: str, params: dict, dataset: dict, job: dict, resources: dict,
                      outputs: dict, software: dict) -> dict:
    """The same facts as the PROV document, flat, for the result page."""
    return {"method": method, "params": params, "dataset": dataset, "job": {
        "id": job["id"], "queued": job["queued"].isoformat(), "started": job["started"].isoformat(),
        "ended": job["ended"].isoformat(), "host": job["host"]}, "resources": resources, "outputs": outputs,
        "software": software}
