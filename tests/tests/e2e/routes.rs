//! The routes under test: every route of the contract (`docs/api.md`), the routes
//! the implementation adds, and the operational endpoints. Path parameters carry the names the
//! implementation gives them (the contract writes `{id}` for conversations and activities).

/// Every route of the contract, as `METHOD /path`.
pub const CONTRACT: &[&str] = &[
    // Schools, staff, groups, children
    "POST /v1/schools",
    "POST /v1/schools/{school_id}/staff",
    "POST /v1/schools/{school_id}/groups",
    "POST /v1/groups/{group_id}/staff",
    "POST /v1/groups/{group_id}/children",
    "GET /v1/groups/{group_id}",
    "GET /v1/me",
    // Invitations
    "POST /v1/invitations",
    "POST /v1/invitations/accept",
    "POST /v1/invitations/{invitation_id}/approve",
    "POST /v1/invitations/{invitation_id}/revoke",
    "GET /v1/groups/{group_id}/invitations",
    // Consent
    "GET /v1/schools/{school_id}/consent-policy",
    "PUT /v1/children/{child_id}/consents/{purpose}",
    "GET /v1/children/{child_id}/consents",
    "GET /v1/children/{child_id}/consents/history",
    // Posts and media
    "POST /v1/media",
    "POST /v1/groups/{group_id}/posts",
    "POST /v1/media/{media_id}/tags",
    "DELETE /v1/media/{media_id}/tags/{child_id}",
    "GET /v1/feed",
    "GET /v1/posts/{post_id}",
    "GET /v1/media/{media_id}",
    "GET /v1/media/{media_id}/viewers",
    "DELETE /v1/posts/{post_id}",
    "DELETE /v1/media/{media_id}",
    // Conversations, quiet hours, absences, activities
    "POST /v1/conversations",
    "POST /v1/conversations/{conversation_id}/messages",
    "GET /v1/conversations",
    "GET /v1/conversations/{conversation_id}/messages",
    "PUT /v1/me/quiet-hours",
    "GET /v1/people/{person_id}/availability",
    "POST /v1/children/{child_id}/absences",
    "GET /v1/groups/{group_id}/absences",
    "POST /v1/groups/{group_id}/activities",
    "POST /v1/activities/{activity_id}/volunteers",
    "DELETE /v1/activities/{activity_id}/volunteers/me",
    "GET /v1/groups/{group_id}/activities",
    // Rights and audit
    "GET /v1/me/export",
    "POST /v1/people/{person_id}/erasure",
    "POST /v1/children/{child_id}/erasure",
    "GET /v1/audit/access-log",
    "GET /v1/audit/verify",
    // Second part: administration and the access lifecycle
    "DELETE /v1/schools/{school_id}/staff/{person_id}",
    "DELETE /v1/groups/{group_id}/staff/{person_id}",
    "PUT /v1/schools/{school_id}/staff/{person_id}/role",
    "POST /v1/children/{child_id}/move",
    "DELETE /v1/groups/{group_id}/children/{child_id}",
    "PATCH /v1/children/{child_id}",
    "DELETE /v1/children/{child_id}/guardians/{person_id}",
    "GET /v1/children/{child_id}/absences",
    "PATCH /v1/posts/{post_id}",
    "GET /v1/schools/{school_id}/settings",
    "PATCH /v1/schools/{school_id}/settings",
    "POST /v1/schools/{school_id}/consent-policy",
    "POST /v1/schools/{school_id}/year-transition",
];

/// Routes the implementation adds to the contract.
pub const ADDED: &[&str] = &[
    "GET /v1/me/quiet-hours",
    "DELETE /v1/me/quiet-hours",
    "GET /v1/me/notifications",
    "POST /v1/me/notifications/delivered",
    "DELETE /v1/children/{child_id}/absences/{absence_id}",
    "DELETE /v1/activities/{activity_id}",
    "POST /v1/invitations/{invitation_id}/resend",
    "POST /v1/me/sso-identity",
    "POST /v1/tokens/revocations",
    "GET /v1/push/vapid-public-key",
    "POST /v1/me/push-subscriptions",
    "DELETE /v1/me/push-subscriptions/{subscription_id}",
    "GET /v1/operator/dead-letters",
    "POST /v1/operator/dead-letters/{delivery_id}/retry",
    // The meeting planner and the calendar feed.
    "POST /v1/groups/{group_id}/meeting-rounds",
    "GET /v1/meeting-rounds/{round_id}",
    "POST /v1/meeting-rounds/{round_id}/slots",
    "POST /v1/meeting-rounds/{round_id}/slots/{slot_id}/block",
    "POST /v1/meeting-rounds/{round_id}/bookings",
    "PUT /v1/meeting-rounds/{round_id}/bookings/{booking_id}",
    "DELETE /v1/meeting-rounds/{round_id}/bookings/{booking_id}",
    "POST /v1/meeting-rounds/{round_id}/close",
    "POST /v1/meeting-rounds/{round_id}/cancel",
    "GET /v1/me/meetings",
    "POST /v1/me/calendar-key",
    "GET /v1/me/calendar.ics",
    // Notifications: preferences, read receipts, acknowledging an absence.
    "GET /v1/me/notification-preferences",
    "PUT /v1/me/notification-preferences",
    "POST /v1/me/read",
    "GET /v1/me/unread",
    "GET /v1/posts/{post_id}/reads",
    "POST /v1/children/{child_id}/absences/{absence_id}/acknowledgement",
];

/// The operational endpoints (no token).
pub const OPERATIONS: &[&str] = &[
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /openapi.json",
];

/// Every route.
pub fn all() -> Vec<&'static str> {
    CONTRACT
        .iter()
        .chain(ADDED)
        .chain(OPERATIONS)
        .copied()
        .collect()
}

/// `(method, path)` of `METHOD /path`.
pub fn split(route: &str) -> (&str, &str) {
    route.split_once(' ').expect("METHOD /path")
}

/// The path with every `{param}` written `{}`, to compare paths whatever their parameters
/// are called.
pub fn shape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}
