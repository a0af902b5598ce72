//! Other users: search, direct rooms, contacts, blocks and reports.

use nebula_wire::{
    Contact, ContactList, ContactRequest, ContactRequestList, DirectRoomList, ReportReceipt,
    ReportRequest, Room, User, UserList, UserRef, UserSearchQuery,
};
use uuid::Uuid;

use crate::routes::*;
use crate::{Client, Result};

impl Client {
    /// Users whose name starts with `prefix` (ignoring case).
    pub async fn search_users(&self, prefix: &str) -> Result<UserList> {
        let query = UserSearchQuery {
            q: prefix.to_owned(),
        };
        self.fetch(self.at_query(SEARCH_USERS, &[], &query)).await
    }

    pub async fn user(&self, user_id: Uuid) -> Result<User> {
        self.fetch(self.at(USER, &[&user_id])).await
    }

    pub async fn report_user(&self, user_id: Uuid, reason: &str) -> Result<ReportReceipt> {
        let body = ReportRequest {
            reason: reason.to_owned(),
        };
        self.fetch(self.at(REPORT_USER, &[&user_id]).json(&body))
            .await
    }

    /// The caller's direct rooms, most recent message first.
    pub async fn direct_rooms(&self) -> Result<DirectRoomList> {
        self.fetch(self.at(DMS, &[])).await
    }

    /// The direct room with `who` (by id or username), created on first use.
    pub async fn open_direct_room(&self, who: &UserRef) -> Result<Room> {
        self.fetch(self.at(OPEN_DM, &[]).json(who)).await
    }

    pub async fn blocks(&self) -> Result<UserList> {
        self.fetch(self.at(BLOCKS, &[])).await
    }

    pub async fn block(&self, user_id: Uuid) -> Result<()> {
        self.fetch_empty(self.at(BLOCK, &[&user_id])).await
    }

    pub async fn unblock(&self, user_id: Uuid) -> Result<()> {
        self.fetch_empty(self.at(UNBLOCK, &[&user_id])).await
    }

    pub async fn contacts(&self) -> Result<ContactList> {
        self.fetch(self.at(CONTACTS, &[])).await
    }

    pub async fn remove_contact(&self, user_id: Uuid) -> Result<()> {
        self.fetch_empty(self.at(REMOVE_CONTACT, &[&user_id])).await
    }

    /// Requests sent to and by the caller that wait for an answer.
    pub async fn contact_requests(&self) -> Result<ContactRequestList> {
        self.fetch(self.at(CONTACT_REQUESTS, &[])).await
    }

    /// Asks `who` to become a contact (accepted at once if they asked first).
    pub async fn request_contact(&self, who: &UserRef) -> Result<ContactRequest> {
        self.fetch(self.at(REQUEST_CONTACT, &[]).json(who)).await
    }

    pub async fn accept_contact(&self, request_id: Uuid) -> Result<Contact> {
        self.fetch(self.at(ACCEPT_CONTACT, &[&request_id])).await
    }

    pub async fn decline_contact(&self, request_id: Uuid) -> Result<()> {
        self.fetch_empty(self.at(DECLINE_CONTACT, &[&request_id]))
            .await
    }
}
