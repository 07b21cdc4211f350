"""The baseline: a bare Bolt app doing the same Slack call for /handoff (ack, then views.open), served
under the same gunicorn settings as Steward. Only for benchmarks/handoff_latency.py."""

import os

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

VIEW = {
    "type": "modal",
    "callback_id": "bare",
    "title": {"type": "plain_text", "text": "Hand off work"},
    "submit": {"type": "plain_text", "text": "Send"},
    "blocks": [
        {
            "type": "input",
            "block_id": "title",
            "label": {"type": "plain_text", "text": "Title"},
            "element": {"type": "plain_text_input", "action_id": "value"},
        }
    ],
}

bolt = App(
    client=WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]),
    signing_secret=os.environ["SLACK_SIGNING_SECRET"],
    token_verification_enabled=False,
)


@bolt.command("/handoff")
def handoff(ack, body, client):
    ack()
    client.views_open(trigger_id=body["trigger_id"], view=VIEW)


app = SlackRequestHandler(bolt)
