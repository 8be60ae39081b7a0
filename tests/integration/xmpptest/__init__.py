"""Test harness for xmppscope's integration tests and demo.

  xmpptest.prosody    Prosody: a private Prosody 0.12 on 127.0.0.1 in a temporary folder
  xmpptest.ejabberd   Ejabberd: a private ejabberd 23.01 on 127.0.0.1 in a temporary folder
  xmpptest.client     slixmpp sessions (run_session, alice_to_bob) and a CLI
  xmpptest.live       logged-in slixmpp clients a test drives step by step (LiveClient)
  xmpptest.rawclient  a raw-socket client for error cases (manual STARTTLS, exact bytes)

Run with Debian's interpreter (/usr/bin/python3), which sees python3-slixmpp, and
PYTHONPATH=tests/integration.
"""

from .prosody import Prosody, ProsodyError, free_ports  # noqa: F401
