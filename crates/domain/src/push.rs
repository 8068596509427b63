//! Web Push subscriptions of a person's devices (RFC 8030): kept as events of the person's
//! stream, the endpoint and its keys sealed for the person, so that erasing the person erases
//! every subscription too.

use crate::ids::PersonId;
use crate::sealed::Sealed;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where and how to reach one device: what the browser's `pushManager.subscribe` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEndpoint {
    /// The push service's URL for this device.
    pub endpoint: String,
    /// The device's P-256 public key (65 bytes uncompressed, base64url).
    pub p256dh: String,
    /// The device's authentication secret (16 bytes, base64url).
    pub auth: String,
}

/// A person subscribed one of their devices to push messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscribed {
    /// The person.
    pub person_id: PersonId,
    /// The subscription.
    pub subscription_id: Uuid,
    /// The endpoint and its keys (personal, sealed for the person).
    pub subscription: Sealed<PushEndpoint>,
}

/// A person removed a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushUnsubscribed {
    /// The person.
    pub person_id: PersonId,
    /// The subscription.
    pub subscription_id: Uuid,
}

/// The push service said a subscription is gone (`404` or `410`): nothing is sent to it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscriptionExpired {
    /// The person.
    pub person_id: PersonId,
    /// The subscription.
    pub subscription_id: Uuid,
    /// The push service's answer.
    pub status: u16,
}
