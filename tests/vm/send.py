#!/usr/bin/python3
"""send.py HOST SUBJECT: one message to HOST:25 with smtplib, plaintext, the
way a mail server that never learned TLS sends it (no STARTTLS). Prints
"sent" once the server has accepted it; exits 1 otherwise."""
import smtplib
import sys

host, subject = sys.argv[1], sys.argv[2]
msg = ("From: <sender@example.org>\r\nTo: <rcpt@example.net>\r\n"
       "Subject: %s\r\n\r\nstarttlsd under systemd: %s\r\n" % (subject, subject))
try:
    with smtplib.SMTP(host, 25, local_hostname="client.example.org", timeout=30) as s:
        s.ehlo()
        if s.has_extn("starttls"):
            print("note: STARTTLS offered to the client")
        refused = s.sendmail("sender@example.org", ["rcpt@example.net"], msg)
        if refused:
            print("refused: %r" % (refused,))
            sys.exit(1)
except (OSError, smtplib.SMTPException) as e:
    print("error: %s: %s" % (type(e).__name__, e))
    sys.exit(1)
print("sent")
