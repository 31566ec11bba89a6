"""An issue's comments as a journal: read oldest first, appended one at a time.

A comment is added with one POST, which is not idempotent (sent twice, it is added twice): a
lost answer is an ``UncertainWriteError`` for the caller to settle by reading the comments
again, never a blind resend.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from connectors.jira import jql as q
from connectors.jira.client import JiraClient


class IssueComment(BaseModel):
    """One comment, its body as plain text (ADF flattened)."""

    id: str
    issue: str  # the issue's key or id, as asked
    created: datetime | None
    text: str


class JiraComments:
    """The comments of a site's issues."""

    def __init__(self, client: JiraClient) -> None:
        self.client = client

    async def entries(self, issue: str) -> list[IssueComment]:
        """Every comment of ``issue`` (key or id), oldest first (as Jira orders them)."""
        return [
            IssueComment(
                id=comment.id,
                issue=issue,
                created=q.parse_jira_time(comment.created),
                text=comment.text,
            )
            async for comment in self.client.comments(issue)
        ]

    async def append(self, issue: str, text: str) -> str:
        """Add a comment (plain text, sent as ADF); its id."""
        comment = await self.client.add_comment(issue, text)
        return comment.id
