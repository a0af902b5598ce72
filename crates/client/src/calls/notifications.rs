//! What reaches the caller while away: push and e-mail switches (`/me/notifications`) and the
//! level of each room (`/rooms/{room_id}/notifications`).

use nebula_wire::{
    NotificationLevel, NotificationSettings, NotificationSettingsUpdate, RoomNotificationSettings,
};
use uuid::Uuid;

use crate::routes::*;
use crate::{Client, Result};

impl Client {
    pub async fn notification_settings(&self) -> Result<NotificationSettings> {
        self.fetch(self.at(NOTIFICATION_SETTINGS, &[])).await
    }

    /// Changes the switches that are `Some`; answers all of them as they now are.
    pub async fn update_notification_settings(
        &self,
        update: &NotificationSettingsUpdate,
    ) -> Result<NotificationSettings> {
        self.fetch(self.at(UPDATE_NOTIFICATION_SETTINGS, &[]).json(update))
            .await
    }

    /// Sets what of `room_id` notifies the caller: everything, mentions only, or nothing.
    pub async fn set_room_notifications(
        &self,
        room_id: Uuid,
        level: NotificationLevel,
    ) -> Result<RoomNotificationSettings> {
        let body = RoomNotificationSettings { level };
        self.fetch(self.at(ROOM_NOTIFICATIONS, &[&room_id]).json(&body))
            .await
    }
}
