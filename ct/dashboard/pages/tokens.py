"""API tokens for the operator API and ``ctctl``: list, create (the secret is shown
once), revoke. Administrators only; multi-server (the tokens live in the locator's
database)."""

from __future__ import annotations

from twisted.internet import defer

from ct.dashboard.auth import ADMIN, TEAM_VIEWER
from ct.dashboard.backend import ActionError
from ct.dashboard.format import utc
from ct.dashboard.frame import PageGroup, csrf_field, post_button
from ct.dashboard.html import tags
from ct.dashboard.responses import arg
from ct.protocol.wire import MAX_NAME

MAX_TOKEN_NAME = 64


def token_teams(raw: str | None) -> tuple[str, ...]:
    teams = tuple(sorted({t.strip() for t in (raw or "").replace(";", ",").split(",")
                          if t.strip()}))
    if any(len(t) > MAX_NAME for t in teams) or len(teams) > 100:
        raise ActionError(f"teams: at most 100 names of at most {MAX_NAME} characters")
    return teams


class TokenPages(PageGroup):
    @defer.inlineCallbacks
    def tokens(self, request, session):
        tokens = yield self.backend.api_tokens()
        table = tags.table(tags.thead(tags.tr(*[tags.th(h) for h in (
            "Name", "Role", "Created", "Last used", "State", "")])), class_="grid",
            id="tokens")
        body = tags.tbody()
        for t in tokens:
            role = t.role if t.role == ADMIN else f"{t.role}: {', '.join(t.teams)}"
            revoke = "" if t.revoked else post_button(
                session, f"/dashboard/tokens/{t.token_id}/revoke", "Revoke",
                f"revoke-{t.token_id}", f"Revoke API token {t.name}? Scripts using it stop "
                "working.", "warn")
            body(tags.tr(tags.td(tags.strong(t.name), tags.div(t.token_id, class_="muted")),
                         tags.td(role), tags.td(utc(t.created_at),
                                                tags.div(t.created_by or "", class_="muted")),
                         tags.td(utc(t.last_used_at) if t.last_used_at else "never"),
                         tags.td(f"revoked {utc(t.revoked_at)}" if t.revoked else "active",
                                 id=f"token-state-{t.token_id}"),
                         tags.td(revoke, class_="actions"), id=f"token-{t.token_id}"))
        if not tokens:
            body(tags.tr(tags.td("No API tokens yet.", colspan="6", class_="muted")))
        role = tags.select(tags.option("admin", value=ADMIN),
                           tags.option("team viewer", value=TEAM_VIEWER), name="role",
                           id="token-role")
        form = tags.form(
            csrf_field(session),
            tags.label("Name", tags.input(name="name", id="token-name", required="required",
                                          maxlength=str(MAX_TOKEN_NAME))),
            tags.label("Role", role),
            tags.label("Teams (team viewer)", tags.input(name="teams", id="token-teams",
                                                         placeholder="red, blue")),
            tags.button("Create token", type="submit", class_="primary", id="create-token"),
            method="post", action="/dashboard/tokens", class_="filters")
        return [tags.p("Tokens for the operator API and ctctl (Authorization: Bearer, or "
                       "CT_API_TOKEN for ctctl). Only a hash is stored: the token is shown "
                       "once, when it is created.", class_="hint"),
                form, table(body)]

    @defer.inlineCallbacks
    def create(self, request, session):
        name = (arg(request, "name") or "").strip()
        if not 0 < len(name) <= MAX_TOKEN_NAME:
            raise ActionError(f"the token needs a name of 1-{MAX_TOKEN_NAME} characters")
        role = arg(request, "role") or ADMIN
        if role not in (ADMIN, TEAM_VIEWER):
            raise ActionError("role must be admin or team-viewer")
        teams = token_teams(arg(request, "teams")) if role == TEAM_VIEWER else ()
        if role == TEAM_VIEWER and not teams:
            raise ActionError("a team viewer token needs at least one team")
        token, text = yield self.backend.create_api_token(name, role, teams, session.user)
        session.flash.append(("token", text))
        return f"API token {token.name} created: copy it now, it is not shown again."

    def revoke(self, token_id: str, request, session):
        return self.backend.revoke_api_token(token_id, session.user).addCallback(
            lambda _: f"API token {token_id} revoked.")
