"""Metadata, tags, notes and attachments on any object (target_type in ANNOTATABLE_TYPES, target_id); every change audited."""

from __future__ import annotations

import math
import mimetypes
from datetime import date
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from portal import audit
from portal.models import (
    ANNOTATABLE_TYPES,
    Attachment,
    Dataset,
    MetadataEntry,
    Note,
    Project,
    Result,
    Subject,
    Tag,
    Upload,
    User,
    Visit,
)
from portal.research import InvalidInput
from portal.storage import HashingWriter, Storage

TARGET_MODELS = {"project": Project, "subject": Subject, "visit": Visit, "dataset": Dataset, "result": Result}
VALUE_TYPES = ("text", "number", "date", "bool")
TRUE_WORDS, FALSE_WORDS = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def target_type_of(kind: str) -> str | None:
    """'subjects' or 'subject' → 'subject'; None for anything that carries no annotations."""
    kind = kind.lower()
    singular = kind.removesuffix("s")
    return singular if singular in ANNOTATABLE_TYPES else None


def find_target(session: Session, target_type: str, target_id: str):
    """The annotated object, or None; integer ids for projects, subjects and visits, uuids for the rest."""
    model = TARGET_MODELS[target_type]
    if target_type in ("project", "subject", "visit"):
        return session.get(model, int(target_id)) if str(target_id).isdigit() else None
    return session.get(model, str(target_id))


def project_id_of(target_type: str, obj) -> int:
    return obj.id if target_type == "project" else obj.project_id


def parse_metadata(payload: dict) -> dict:
    """Typed value fields from {key, type, value, unit}; raises InvalidInput saying what is wrong."""
    key = str(payload.get("key", "")).strip()
    if not key or len(key) > 200:
        raise InvalidInput("field 'key' is required (up to 200 characters)")
    value_type = str(payload.get("type", payload.get("value_type", "text"))).strip().lower()
    if value_type not in VALUE_TYPES:
        raise InvalidInput(f"type {value_type!r} is not one of {', '.join(VALUE_TYPES)}")
    value = payload.get("value")
    fields = {"key": key, "value_type": value_type, "value_number": None, "value_date": None,
              "unit": str(payload.get("unit", "") or "").strip()[:40]}
    if value_type == "text":
        if value is None or isinstance(value, (dict, list)):
            raise InvalidInput("a text value must be a string")
        fields["value_text"] = str(value)
    elif value_type == "number":
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise InvalidInput(f"{value!r} is not a number (type number)")
        fields["value_number"], fields["value_text"] = number, f"{number:.15g}"
    elif value_type == "date":
        try:
            fields["value_date"] = date.fromisoformat(str(value))
        except ValueError:
            raise InvalidInput(f"{value!r} is not a date (type date wants YYYY-MM-DD)") from None
        fields["value_text"] = fields["value_date"].isoformat()
    else:
        word = str(value).strip().lower() if not isinstance(value, bool) else str(value).lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            raise InvalidInput(f"{value!r} is not a boolean (type bool wants true or false)")
        fields["value_text"] = "true" if word in TRUE_WORDS else "false"
    if value_type != "number":
        fields["unit"] = ""
    return fields


def _event(session, action, user, target_type, target_id, project_id, *, old=None, new=None, reason="", remote_addr=""):
    audit.record(session, action, user=user, target_type=target_type, target_id=target_id, project_id=project_id,
                 old=old, new=new, reason=str(reason or "")[:2000], remote_addr=remote_addr)


def set_metadata(session: Session, user: User, project_id: int, target_type: str, target_id: str, payload: dict,
                 remote_addr: str = "") -> MetadataEntry:
    """Create the key, or change its value (one value per key per object)."""
    fields = parse_metadata(payload)
    entry = session.scalar(select(MetadataEntry).where(MetadataEntry.target_type == target_type,
                                                       MetadataEntry.target_id == str(target_id),
                                                       MetadataEntry.key == fields["key"]))
    if entry is None:
        entry = MetadataEntry(project_id=project_id, target_type=target_type, target_id=str(target_id),
                              created_by_id=user.id, **fields)
        session.add(entry)
        _event(session, "metadata.create", user, target_type, target_id, project_id, new=metadata_value(entry),
               remote_addr=remote_addr)
    else:
        old = metadata_value(entry)
        for name, value in fields.items():
            setattr(entry, name, value)
        if metadata_value(entry) != old:
            _event(session, "metadata.modify", user, target_type, target_id, project_id, old=old,
                   new=metadata_value(entry), reason=payload.get("reason", ""), remote_addr=remote_addr)
    session.commit()
    return entry


def delete_metadata(session: Session, user: User, entry: MetadataEntry, reason: str = "", remote_addr: str = "") -> None:
    _event(session, "metadata.delete", user, entry.target_type, entry.target_id, entry.project_id,
           old=metadata_value(entry), reason=reason, remote_addr=remote_addr)
    session.delete(entry)
    session.commit()


def add_tag(session: Session, user: User, project_id: int, target_type: str, target_id: str, name: str,
            remote_addr: str = "") -> Tag:
    name = str(name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("field 'name' is required (up to 100 characters)")
    tag = session.scalar(select(Tag).where(Tag.target_type == target_type, Tag.target_id == str(target_id),
                                           Tag.name == name))
    if tag is None:
        tag = Tag(project_id=project_id, target_type=target_type, target_id=str(target_id), name=name,
                  created_by_id=user.id)
        session.add(tag)
        _event(session, "tag.create", user, target_type, target_id, project_id, new={"tag": name},
               remote_addr=remote_addr)
        session.commit()
    return tag


def remove_tag(session: Session, user: User, tag: Tag, reason: str = "", remote_addr: str = "") -> None:
    _event(session, "tag.delete", user, tag.target_type, tag.target_id, tag.project_id, old={"tag": tag.name},
           reason=reason, remote_addr=remote_addr)
    session.delete(tag)
    session.commit()


def add_note(session: Session, user: User, project_id: int, target_type: str, target_id: str, body: str,
             remote_addr: str = "") -> Note:
    body = str(body or "").strip()
    if not body or len(body) > 100_000:
        raise InvalidInput("field 'body' is required (up to 100,000 characters)")
    note = Note(project_id=project_id, target_type=target_type, target_id=str(target_id), body=body, author_id=user.id)
    session.add(note)
    session.flush()
    _event(session, "note.create", user, target_type, target_id, project_id, new={"note": note.id, "body": body},
           remote_addr=remote_addr)
    session.commit()
    return note


def update_note(session: Session, user: User, note: Note, body: str, reason: str = "", remote_addr: str = "") -> Note:
    body = str(body or "").strip()
    if not body or len(body) > 100_000:
        raise InvalidInput("field 'body' is required (up to 100,000 characters)")
    if body != note.body:
        _event(session, "note.modify", user, note.target_type, note.target_id, note.project_id,
               old={"note": note.id, "body": note.body}, new={"note": note.id, "body": body}, reason=reason,
               remote_addr=remote_addr)
        note.body = body
    session.commit()
    return note


def delete_note(session: Session, user: User, note: Note, reason: str = "", remote_addr: str = "") -> None:
    _event(session, "note.delete", user, note.target_type, note.target_id, note.project_id,
           old={"note": note.id, "body": note.body}, reason=reason, remote_addr=remote_addr)
    session.delete(note)
    session.commit()


def add_attachment(session: Session, storage: Storage, user: User, project_id: int, target_type: str, target_id: str,
                   upload: HashingWriter, filename: str, media_type: str = "", description: str = "",
                   remote_addr: str = "") -> Attachment:
    """Publish the streamed upload under originals/ (content-addressed, deduplicated) and record the attachment."""
    upload.close()
    name = Path(str(filename or "").replace("\\", "/")).name.strip()[:500]
    if not name:
        upload.path.unlink(missing_ok=True)
        raise InvalidInput("the file part needs a filename")
    if upload.size == 0:
        upload.path.unlink(missing_ok=True)
        raise InvalidInput(f"{name} is empty")
    storage.publish_original(upload.path, upload.hexdigest)
    media_type = (media_type or "").split(";")[0].strip()
    if not media_type or media_type == "application/octet-stream":
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    attachment = Attachment(project_id=project_id, target_type=target_type, target_id=str(target_id), filename=name,
                            media_type=media_type[:200], sha256=upload.hexdigest, size=upload.size,
                            description=str(description or "")[:10_000], created_by_id=user.id)
    session.add(attachment)
    session.flush()
    _event(session, "attachment.create", user, target_type, target_id, project_id, new=attachment_json(attachment),
           remote_addr=remote_addr)
    session.commit()
    return attachment


def delete_attachment(session: Session, storage: Storage, user: User, attachment: Attachment, reason: str = "",
                      remote_addr: str = "") -> None:
    _event(session, "attachment.delete", user, attachment.target_type, attachment.target_id, attachment.project_id,
           old=attachment_json(attachment), reason=reason, remote_addr=remote_addr)
    sha256 = attachment.sha256
    session.delete(attachment)
    session.commit()
    discard_unreferenced(session, storage, [sha256])


def discard_unreferenced(session: Session, storage: Storage, hashes) -> None:
    """Remove stored files no attachment or dataset refers to any more, nor a finished upload about to become one
    (its row holds the hash from completion until its dataset is committed, in the same transaction)."""
    for sha256 in set(hashes):
        referrers = (select(Attachment.id).where(Attachment.sha256 == sha256),
                     select(Dataset.id).where(Dataset.original_sha256 == sha256),
                     select(Upload.id).where(Upload.sha256 == sha256, Upload.dataset_id.is_(None)))
        if all(session.scalar(query.limit(1)) is None for query in referrers):
            storage.original(sha256).delete()


def purge_annotations(session: Session, target_type: str, target_id) -> list[str]:
    """Delete every annotation row of an object being deleted; returns its attachments' SHA-256 (files to check)."""
    where = lambda model: (model.target_type == target_type) & (model.target_id == str(target_id))
    hashes = list(session.scalars(select(Attachment.sha256).where(where(Attachment))))
    for model in (MetadataEntry, Tag, Note, Attachment):
        session.execute(delete(model).where(where(model)))
    return hashes


def _of(session: Session, model, target_type: str, target_id, order):
    return list(session.scalars(select(model).where(model.target_type == target_type,
                                                    model.target_id == str(target_id)).order_by(order)))


def metadata_of(session, target_type, target_id) -> list[MetadataEntry]:
    return _of(session, MetadataEntry, target_type, target_id, MetadataEntry.key)


def tags_of(session, target_type, target_id) -> list[Tag]:
    return _of(session, Tag, target_type, target_id, Tag.name)


def notes_of(session, target_type, target_id) -> list[Note]:
    return _of(session, Note, target_type, target_id, Note.created_at.desc())


def attachments_of(session, target_type, target_id) -> list[Attachment]:
    return _of(session, Attachment, target_type, target_id, Attachment.created_at.desc())


def metadata_value(entry: MetadataEntry) -> dict:
    value = {"number": entry.value_number, "date": entry.value_text, "bool": entry.value_text == "true"}
    return {"key": entry.key, "type": entry.value_type, "value": value.get(entry.value_type, entry.value_text),
            "unit": entry.unit}


def metadata_json(entry: MetadataEntry) -> dict:
    return metadata_value(entry) | {"id": entry.id, "text": entry.value_text,
                                    "updated_at": entry.updated_at.isoformat() if entry.updated_at else None}


def note_json(note: Note) -> dict:
    return {"id": note.id, "body": note.body, "author": note.author.display_name if note.author else "",
            "created_at": note.created_at.isoformat(), "updated_at": note.updated_at.isoformat()}


def attachment_json(attachment: Attachment) -> dict:
    return {"id": attachment.id, "filename": attachment.filename, "media_type": attachment.media_type,
            "sha256": attachment.sha256, "size": attachment.size, "description": attachment.description,
            "url": f"/api/v1/attachments/{attachment.id}/download"}
