//! Rooms and their members (`/rooms`, `/rooms/{room_id}/members`, presence pages).

use nebula_wire::{
    AddMemberRequest, AssignableRole, ChangesPage, ChangesQuery, CreateRoomRequest, Member,
    MemberList, OnlinePage, OnlineQuery, PublicRoomPage, PublicRoomQuery, Room, RoomList,
    UpdateMemberRequest,
};
use uuid::Uuid;

use crate::routes::*;
use crate::{Client, Result};

impl Client {
    /// The rooms the caller is a member of.
    pub async fn my_rooms(&self) -> Result<RoomList> {
        self.fetch(self.at(MY_ROOMS, &[])).await
    }

    /// Creates a public room named `name`, owned by the caller.
    pub async fn create_room(&self, name: &str) -> Result<Room> {
        self.create_room_with(&CreateRoomRequest {
            name: name.to_owned(),
            is_private: None,
            description: None,
        })
        .await
    }

    /// [`create_room`](Client::create_room) with every field (private, description).
    pub async fn create_room_with(&self, request: &CreateRoomRequest) -> Result<Room> {
        self.fetch(self.at(CREATE_ROOM, &[]).json(request)).await
    }

    pub async fn public_rooms(&self, query: &PublicRoomQuery) -> Result<PublicRoomPage> {
        self.fetch(self.at_query(PUBLIC_ROOMS, &[], query)).await
    }

    pub async fn room(&self, room_id: Uuid) -> Result<Room> {
        self.fetch(self.at(ROOM, &[&room_id])).await
    }

    /// Messages created or changed after `query.since_rev`, each in its current version.
    pub async fn changes(&self, room_id: Uuid, query: &ChangesQuery) -> Result<ChangesPage> {
        self.fetch(self.at_query(CHANGES, &[&room_id], query)).await
    }

    /// One page of the room's online members.
    pub async fn online(&self, room_id: Uuid, query: &OnlineQuery) -> Result<OnlinePage> {
        self.fetch(self.at_query(ONLINE, &[&room_id], query)).await
    }

    pub async fn members(&self, room_id: Uuid) -> Result<MemberList> {
        self.fetch(self.at(MEMBERS, &[&room_id])).await
    }

    /// Joins a public room.
    pub async fn join(&self, room_id: Uuid) -> Result<Member> {
        self.add_member(room_id, &AddMemberRequest::default()).await
    }

    /// Adds someone (by id or username) to a room the caller administers; an empty request
    /// joins the caller.
    pub async fn add_member(&self, room_id: Uuid, request: &AddMemberRequest) -> Result<Member> {
        self.fetch(self.at(ADD_MEMBER, &[&room_id]).json(request))
            .await
    }

    pub async fn leave(&self, room_id: Uuid) -> Result<()> {
        self.fetch_empty(self.at(LEAVE, &[&room_id])).await
    }

    pub async fn remove_member(&self, room_id: Uuid, user_id: Uuid) -> Result<()> {
        self.fetch_empty(self.at(REMOVE_MEMBER, &[&room_id, &user_id]))
            .await
    }

    /// Makes a member an admin, or an admin a member again (owners only).
    pub async fn update_member(
        &self,
        room_id: Uuid,
        user_id: Uuid,
        role: AssignableRole,
    ) -> Result<Member> {
        let body = UpdateMemberRequest { role };
        self.fetch(self.at(UPDATE_MEMBER, &[&room_id, &user_id]).json(&body))
            .await
    }
}
