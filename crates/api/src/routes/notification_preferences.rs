//! Notification preferences: per kind of notification the channel that carries it (push,
//! e-mail, a daily digest, or none), the digest time and time zone, and quiet hours — for every
//! signed-in person, staff and guardians alike.
//!
//! What a person does not choose comes from their school's defaults (`PATCH
//! /v1/schools/{school_id}/settings`), else the built-in ones: push for every kind,
//! `Europe/Amsterdam`, a digest at 18:00. The quiet hours here are the same schedule as
//! `/v1/me/quiet-hours`: whichever was written last holds.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::routes::conversations::QuietHoursDoc;
use crate::routes::{Body, Position};
use crate::state::{AppState, MinPosition, RequestId, Q};
use axum::extract::State;
use axum::routing::put;
use axum::{Json, Router};
use chrono::NaiveTime;
use kring_domain::person::{
    self, Channel, EffectivePreferences, NotificationKind, NotificationPreferences, PersonAction,
    PersonContext, SchoolNotificationDefaults,
};
use kring_domain::school::School;
use kring_domain::{Command, PersonId, SchoolId, StreamName};
use kring_projections::models::memberships;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

/// This module's routes.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/v1/me/notification-preferences",
        put(set_preferences).get(preferences),
    )
}

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(preferences, set_preferences),
    components(schemas(ChannelName, KindChannels, PreferencesDoc, PreferencesChange))
)]
pub struct Doc;

/// How notifications of a kind reach a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelName {
    /// A push message, as soon as released.
    Push,
    /// An e-mail, as soon as released.
    Email,
    /// One message a day at the digest time, with all of that day's.
    Digest,
    /// Never sent; still listed by `GET /v1/me/notifications`.
    Off,
}

impl From<Channel> for ChannelName {
    fn from(c: Channel) -> Self {
        match c {
            Channel::Push => Self::Push,
            Channel::Email => Self::Email,
            Channel::Digest => Self::Digest,
            Channel::Off => Self::Off,
        }
    }
}

impl From<ChannelName> for Channel {
    fn from(c: ChannelName) -> Self {
        match c {
            ChannelName::Push => Self::Push,
            ChannelName::Email => Self::Email,
            ChannelName::Digest => Self::Digest,
            ChannelName::Off => Self::Off,
        }
    }
}

/// A channel per notification kind; a kind left out is not chosen.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KindChannels {
    /// A new post in a group (or the whole school).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<ChannelName>,
    /// A message in a conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<ChannelName>,
    /// An activity scheduled in a group of one's child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_created: Option<ChannelName>,
    /// The day before an activity one volunteers for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_reminder: Option<ChannelName>,
    /// One's invitation was approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_approved: Option<ChannelName>,
    /// A new consent-policy version asks for a decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_needed: Option<ChannelName>,
    /// The school acknowledged a planned absence one reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absence_acknowledged: Option<ChannelName>,
    /// A guardian reported an absence in one's group (staff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absence_reported: Option<ChannelName>,
    /// A parent–teacher conversation booked for one's child (by the other guardian or staff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_booked: Option<ChannelName>,
    /// A conversation booked for one's child moved or cancelled (by the other guardian or
    /// staff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_changed: Option<ChannelName>,
    /// The day before a conversation booked for one's child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_reminder: Option<ChannelName>,
}

impl KindChannels {
    fn slot(&mut self, kind: NotificationKind) -> &mut Option<ChannelName> {
        match kind {
            NotificationKind::Post => &mut self.post,
            NotificationKind::Message => &mut self.message,
            NotificationKind::ActivityCreated => &mut self.activity_created,
            NotificationKind::ActivityReminder => &mut self.activity_reminder,
            NotificationKind::InvitationApproved => &mut self.invitation_approved,
            NotificationKind::ConsentNeeded => &mut self.consent_needed,
            NotificationKind::AbsenceAcknowledged => &mut self.absence_acknowledged,
            NotificationKind::AbsenceReported => &mut self.absence_reported,
            NotificationKind::MeetingBooked => &mut self.meeting_booked,
            NotificationKind::MeetingChanged => &mut self.meeting_changed,
            NotificationKind::MeetingReminder => &mut self.meeting_reminder,
        }
    }

    /// As the domain has them.
    #[must_use]
    pub fn to_domain(&self) -> BTreeMap<NotificationKind, Channel> {
        let mut this = self.clone();
        NotificationKind::ALL
            .into_iter()
            .filter_map(|kind| this.slot(kind).map(|c| (kind, c.into())))
            .collect()
    }

    /// From the domain's.
    #[must_use]
    pub fn from_domain(kinds: &BTreeMap<NotificationKind, Channel>) -> Self {
        let mut doc = Self::default();
        for (kind, channel) in kinds {
            *doc.slot(*kind) = Some((*channel).into());
        }
        doc
    }
}

/// A local time of day, `HH:MM` or `HH:MM:SS`.
///
/// # Errors
/// `422` naming `field` for anything else.
pub fn digest_time(field: &str, text: &str) -> ApiResult<NaiveTime> {
    NaiveTime::parse_from_str(text, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M:%S"))
        .map_err(|_| {
            ApiError::validation(format!(
                "{field}: {text:?} is not a time of day such as 18:00"
            ))
        })
}

/// The caller's effective notification preferences.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PreferencesDoc {
    /// The quiet hours that hold the caller's notifications: their own, else (staff) the
    /// school's default; `null` for none.
    pub quiet_hours: Option<QuietHoursDoc>,
    /// The local time of the daily digest, `HH:MM`.
    #[schema(example = "18:00")]
    pub digest_at: String,
    /// The caller's time zone.
    #[schema(value_type = super::TimeZoneName)]
    pub timezone: String,
    /// The channel of every kind.
    pub kinds: KindChannels,
    /// What the caller chose themself (the rest comes from the school or the built-in
    /// defaults); `null` when they never chose.
    pub own: Option<PreferencesChange>,
    /// The school whose defaults fill in the rest; `null` for none.
    pub school_id: Option<Uuid>,
}

/// `PUT /v1/me/notification-preferences`: the caller's choices, replacing earlier ones (quiet
/// hours included: left out, the caller has none of their own).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PreferencesChange {
    /// Weekly quiet hours: notifications are held while quiet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHoursDoc>,
    /// The local time of the daily digest, `HH:MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        example = "07:30",
        pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
    )]
    pub digest_at: Option<String>,
    /// The caller's IANA time zone, e.g. `Europe/Amsterdam`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::TimeZoneName>)]
    pub timezone: Option<String>,
    /// The channel per kind.
    #[serde(default)]
    pub kinds: KindChannels,
}

impl PreferencesChange {
    fn to_domain(&self) -> ApiResult<NotificationPreferences> {
        Ok(NotificationPreferences {
            quiet_hours: self
                .quiet_hours
                .as_ref()
                .map(QuietHoursDoc::to_domain)
                .transpose()?,
            digest_at: self
                .digest_at
                .as_deref()
                .map(|t| digest_time("digest_at", t))
                .transpose()?,
            timezone: self.timezone.clone(),
            kinds: self.kinds.to_domain(),
        })
    }

    fn from_domain(p: &NotificationPreferences, quiet: Option<&person::QuietHours>) -> Self {
        Self {
            quiet_hours: quiet.map(QuietHoursDoc::from_domain),
            digest_at: p.digest_at.map(|t| t.format("%H:%M").to_string()),
            timezone: p.timezone.clone(),
            kinds: KindChannels::from_domain(&p.kinds),
        }
    }
}

/// The school whose defaults apply to the caller when no notification names one: the first
/// where they are staff, else the first where they are a guardian (by id).
async fn home_school(state: &AppState, person: PersonId) -> ApiResult<Option<(SchoolId, bool)>> {
    let schools = memberships::person(&state.system.db, person)
        .await?
        .map(|p| p.schools)
        .unwrap_or_default();
    let staff = schools.iter().find(|s| s.role.is_some());
    Ok(staff
        .or_else(|| schools.first())
        .map(|s| (s.school_id, s.role.is_some())))
}

/// The caller's notification preferences as they take effect: their own choices, else their
/// school's defaults, else the built-in ones (push for every kind, `Europe/Amsterdam`, a digest
/// at 18:00). A notification follows the defaults of its own school.
#[utoipa::path(get, path = "/v1/me/notification-preferences", tag = "notifications",
    params(MinPosition),
    responses((status = 200, body = PreferencesDoc), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn preferences(
    State(state): State<AppState>,
    caller: Caller,
    Q(min): Q<MinPosition>,
) -> ApiResult<Json<PreferencesDoc>> {
    min.wait(&state).await?;
    let person = caller
        .person()
        .ok_or_else(|| ApiError::forbidden("notification preferences are a person's own"))?;
    let me = state
        .exec
        .load::<person::Person>(&StreamName::person(person))
        .await?
        .state;
    let home = home_school(&state, person).await?;
    let roster = match home {
        Some((school, _)) => Some(state.exec.school(school).await?.state),
        None => None,
    };
    let effective = EffectivePreferences::resolve(
        me.notification_preferences.as_ref(),
        me.quiet_hours.as_ref(),
        roster
            .as_ref()
            .map(|r| SchoolNotificationDefaults::of(&r.settings)),
        home.is_some_and(|(_, staff)| staff),
    );
    let own = match (&me.notification_preferences, &me.quiet_hours) {
        (Some(p), quiet) => Some(PreferencesChange::from_domain(p, quiet.as_ref())),
        (None, Some(quiet)) => Some(PreferencesChange::from_domain(
            &NotificationPreferences::default(),
            Some(quiet),
        )),
        (None, None) => None,
    };
    Ok(Json(PreferencesDoc {
        quiet_hours: effective
            .quiet_hours
            .as_ref()
            .map(QuietHoursDoc::from_domain),
        digest_at: effective.digest_at.format("%H:%M").to_string(),
        timezone: effective.timezone.name().to_owned(),
        kinds: KindChannels::from_domain(&effective.kinds),
        own,
        school_id: home.map(|(s, _)| s.into()),
    }))
}

/// Sets the caller's notification preferences (staff and guardians), replacing earlier ones.
/// A notification made from then on follows them: its channel, and when it is released (held
/// for quiet hours, or gathered into the daily digest).
#[utoipa::path(put, path = "/v1/me/notification-preferences", tag = "notifications",
    request_body = PreferencesChange,
    responses((status = 200, body = Position), (status = 403, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn set_preferences(
    State(state): State<AppState>,
    caller: Caller,
    RequestId(rid): RequestId,
    Body(req): Body<PreferencesChange>,
) -> ApiResult<Json<Position>> {
    let person = caller
        .person()
        .ok_or_else(|| ApiError::forbidden("notification preferences are a person's own"))?;
    let preferences = req.to_domain()?;
    let actor = caller.actor();
    // Setting one's own preferences asks nothing of a school's roster.
    let roster = School::default();
    let position = state
        .exec
        .run::<person::Person, _>(StreamName::person(person), actor, rid, |s, now| {
            person::decide(
                &PersonContext {
                    person: s,
                    school: &roster,
                },
                Command::new(
                    actor,
                    PersonAction::SetNotificationPreferences(preferences.clone()),
                ),
                now,
            )
        })
        .await?
        .position;
    Ok(Json(Position { position }))
}
