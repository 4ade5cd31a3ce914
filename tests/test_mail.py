"""Mail goes to a real SMTP server on loopback (aiosmtpd), or to outbox/ when none is configured."""

from email import message_from_bytes
from email.policy import default

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from portal.embedded_redis import free_port
from portal.mail import send_mail
from portal.settings import Settings


class Collect(Message):
    def __init__(self):
        super().__init__()
        self.messages = []

    def handle_message(self, message):
        self.messages.append(message)


@pytest.fixture
def smtp_server():
    handler = Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


def test_mail_is_sent_over_smtp(tmp_path, smtp_server):
    controller, handler = smtp_server
    settings = Settings(data_dir=tmp_path, smtp_host="127.0.0.1", smtp_port=controller.port, smtp_starttls=False,
                        mail_from="portal@lab.example")
    where = send_mail(settings, ["boss@lab.example"], "Ready to view: tibia", "Have a look:\n  http://x/datasets/1\n")
    assert where == f"smtp://127.0.0.1:{controller.port}"
    [message] = handler.messages
    assert message["To"] == "boss@lab.example" and message["From"] == "portal@lab.example"
    assert message["Subject"] == "Ready to view: tibia"
    assert "http://x/datasets/1" in message.get_payload()
    assert not (tmp_path / "outbox").exists()


def test_without_smtp_mail_lands_in_the_outbox(tmp_path):
    settings = Settings(data_dir=tmp_path)
    where = send_mail(settings, ["a@b.example"], "Subject ü", "Body")
    [eml] = list((tmp_path / "outbox").iterdir())
    assert str(eml) == where and eml.suffix == ".eml"
    parsed = message_from_bytes(eml.read_bytes(), policy=default)
    assert parsed["Subject"] == "Subject ü" and parsed.get_content().strip() == "Body"


def test_unreachable_smtp_server_raises(tmp_path):
    settings = Settings(data_dir=tmp_path, smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False)
    with pytest.raises(OSError):
        send_mail(settings, ["a@b.example"], "s", "b")
