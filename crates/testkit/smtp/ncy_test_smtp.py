"""The SMTP server of the worker's email tests (run by ncy-testkit's SmtpServer).

A real aiosmtpd server on 127.0.0.1, on PORT or else a port the OS picks (printed on the first
line of stdout either way, once it listens; a test restarts a stopped server on its old port), that
writes each accepted message to DIR as one JSON file (envelope, headers, text and HTML parts,
raw bytes), written to a temporary name and renamed so a reader never sees half a file.

Recipients decide faults, so a test asks for one by address:
  reject@...  refused with 550 (permanent: the sender must not retry)
  busy@...    refused with 451 (transient: the sender may retry)
  down@...    answered 421 (the service is not available: the sender waits for the server)

Usage: python ncy_test_smtp.py DIR [PORT]   (stops on SIGTERM or SIGINT)
"""

import asyncio
import itertools
import json
import os
import signal
import sys
from email import policy
from email.parser import BytesParser

from aiosmtpd.smtp import SMTP


class MailboxDir:
    """aiosmtpd handler: refuses the fault addresses, stores every other message as JSON."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        # After a restart, numbering goes on after the messages already there.
        kept = [n for n in os.listdir(out_dir) if n.endswith(".json")]
        self.seq = itertools.count(len(kept) + 1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local == "reject":
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        if local == "busy":
            return "451 4.3.0 <%s>: try again later" % address
        if local == "down":
            return "421 4.3.2 Service not available, closing transmission channel"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mailFrom": envelope.mail_from,
            "rcptTos": list(envelope.rcpt_tos),
            "subject": str(msg.get("Subject", "")),
            "from": str(msg.get("From", "")),
            "to": str(msg.get("To", "")),
            "cc": str(msg.get("Cc", "")),
            "contentType": msg.get_content_type(),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
            "raw": raw.decode("utf-8", errors="replace"),
        }
        name = "%06d" % next(self.seq)
        tmp = os.path.join(self.out_dir, "." + name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(self.out_dir, name + ".json"))
        return "250 Message accepted for delivery"


async def main(out_dir, port):
    loop = asyncio.get_running_loop()
    handler = MailboxDir(out_dir)
    # reuse_address (the default on Unix): a restart binds the old port despite TIME_WAIT.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="ncy-test-smtp"),
        host="127.0.0.1",
        port=port,
        reuse_address=True,
    )
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: ncy_test_smtp.py DIR [PORT]")
    os.makedirs(sys.argv[1], exist_ok=True)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 0))
