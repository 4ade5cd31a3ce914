"""Sending mail: over SMTP when a server is configured, else as .eml files in <data_dir>/outbox."""

from __future__ import annotations

import os
import smtplib
import ssl
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from portal.settings import Settings

SMTP_TIMEOUT_SECONDS = 30
SMTPS_PORT = 465


def build_message(settings: Settings, to: list[str], subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=settings.mail_from.rpartition("@")[2] or "tilescope")
    message.set_content(body)
    return message


def send_mail(settings: Settings, to: list[str], subject: str, body: str) -> str:
    """Send (or file) one message; returns where it went: 'smtp://host:port' or the .eml path."""
    message = build_message(settings, to, subject, body)
    if not settings.smtp_host:
        return str(write_to_outbox(settings, message))
    context = ssl.create_default_context()
    implicit_tls = settings.smtp_tls or settings.smtp_port == SMTPS_PORT
    if implicit_tls:
        smtp = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS, context=context)
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS)
    with smtp:
        if settings.smtp_starttls and not implicit_tls:
            smtp.starttls(context=context)
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(message)
    return f"smtp://{settings.smtp_host}:{settings.smtp_port}"


def write_to_outbox(settings: Settings, message: EmailMessage) -> Path:
    """Write the message atomically as outbox/<time>-<id>.eml; a reader never sees half a file."""
    outbox = settings.storage_dir("outbox")
    name = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:12]}.eml"
    temporary = outbox / f".{name}.partial"
    temporary.write_bytes(bytes(message))
    os.replace(temporary, outbox / name)
    return outbox / name
