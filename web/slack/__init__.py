"""The Slack bot, on when SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are both set.

    start_slack(app)   in the lifespan, after the event bus and the supervisor: builds the bot
                       (`web.slack.bot.SlackBot`, slack-bolt) on `app.state.slack` and starts its
                       progress follower (resuming the jobs a previous server was following)
    stop_slack(app)    on shutdown, first: stops following (the rows stay, the next start resumes)
                       and shuts the bot's worker pool down

slack-bolt and slack-sdk are imported only when Slack is enabled, so the server's start-up does
not pay for them otherwise. The HTTP side is `web.routes.slack`.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def slack_enabled(settings: Any) -> bool:
    """True when both SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are set."""
    return bool(settings.slack.enabled)


async def start_slack(app: Any) -> None:
    """Start the Slack bot on `app.state.slack` when Slack is enabled (else None there, with a warning
    when only one of the two settings is set), and resume following the progress of its jobs."""
    settings = app.state.settings
    app.state.slack = None
    if not slack_enabled(settings):
        if settings.slack.bot_token or settings.slack.signing_secret:
            log.warning("Slack is off: set both SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET")
        return
    from web.slack.bot import SlackBot

    bot = SlackBot(app, settings)
    await bot.start()
    app.state.slack = bot
    log.info("Slack bot on (Web API %s)", bot.base_url)


async def stop_slack(app: Any) -> None:
    """Stop the Slack bot, if one runs: stop following progress and shut its worker pool down."""
    bot = getattr(app.state, "slack", None)
    if bot is None:
        return
    app.state.slack = None
    await bot.close()


__all__ = ["slack_enabled", "start_slack", "stop_slack"]
