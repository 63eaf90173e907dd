"""The official Stripe Python client against the simulator: lists Checkout Sessions, refunds and
disputes created since SINCE, auto-paginating 100 at a time, retrieves one refund and one dispute,
and prints what it saw as JSON. Usage: SIM_URL=http://127.0.0.1:PORT API_KEY=sk_test_… SINCE=<unix>
python lists.py"""

import json
import os

import stripe

stripe.api_key = os.environ["API_KEY"]
stripe.api_base = os.environ["SIM_URL"]
stripe.max_network_retries = 0
since = int(os.environ["SINCE"])


def ids(resource):
    page = resource.list(limit=100, created={"gte": since})
    return [o.id for o in page.auto_paging_iter()]


sessions = ids(stripe.checkout.Session)
refunds = ids(stripe.Refund)
disputes = ids(stripe.Dispute)
refund = stripe.Refund.retrieve(refunds[0])
dispute = stripe.Dispute.retrieve(disputes[0])
print(json.dumps({
    "client": f"stripe-python {stripe.VERSION}",
    "sessions": len(sessions),
    "sessionsDistinct": len(set(sessions)),
    "refunds": len(refunds),
    "disputes": len(disputes),
    "retrieved": [refund.object, dispute.object],
}))
