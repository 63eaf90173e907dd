"""An app's order notification endpoint in Python, as docs/integration.md writes it: the raw body
and the Edge-Signature header go to the Stripe SDK's Webhook.construct_event with
APP_NOTIFY_SECRET; a verified notification is deduplicated by its id and acted on; anything else is
answered 400.

    APP_NOTIFY_SECRET=... PORT=... OUT=received.jsonl python3 server.py
"""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import stripe

SECRET = os.environ["APP_NOTIFY_SECRET"]
OUT = os.environ.get("OUT", "received.jsonl")
seen = set()


class Notifications(BaseHTTPRequestHandler):
    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            notification = stripe.Webhook.construct_event(raw, self.headers.get("Edge-Signature"), SECRET)
        except (ValueError, stripe.SignatureVerificationError) as err:
            self.record({"verified": False, "error": str(err)})
            self.answer(400, b"bad signature")
            return
        if notification["id"] not in seen:
            seen.add(notification["id"])
            if notification["type"] == "order.paid":
                print(f"fulfilled order {notification['order_id']}", flush=True)
        self.record({"verified": True, "id": notification["id"], "type": notification["type"],
                     "order_id": notification["order_id"]})
        self.answer(200, b"ok")

    def record(self, line):
        with open(OUT, "a") as f:
            f.write(json.dumps(line) + "\n")

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Notifications).serve_forever()
