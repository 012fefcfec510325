"""Staff alerts in chat: WeCom, DingTalk, Feishu/Lark and Slack robots, within each one's rate limit, with no
personal data in any message (``ChatAlerts.raise_alert(Alert(...))``)."""

from casework.chat.alerts import ChatAlerts
from casework.chat.messages import REMINDER_ALERTS, Alert, AlertKind, case_alert

__all__ = ["REMINDER_ALERTS", "Alert", "AlertKind", "ChatAlerts", "case_alert"]
