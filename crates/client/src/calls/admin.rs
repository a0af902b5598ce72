//! The service's own routes (`/`, `/health*`, `/asyncapi.json`) and the administrators'
//! (`/admin`).

use nebula_wire::{
    AdminListQuery, AdminRooms, AdminUser, AdminUsers, AuditLog, AuditQuery, Health, Report,
    Reports, ReportsQuery, ResolveReportRequest, ServiceInfo,
};
use uuid::Uuid;

use crate::routes::*;
use crate::{Client, Result};

impl Client {
    /// The server's name, version and limits.
    pub async fn service_info(&self) -> Result<ServiceInfo> {
        self.fetch(self.at(SERVICE_INFO, &[])).await
    }

    pub async fn health(&self) -> Result<Health> {
        self.fetch(self.at(HEALTH, &[])).await
    }

    /// Whether the process runs (an orchestrator's liveness probe).
    pub async fn health_live(&self) -> Result<Health> {
        self.fetch(self.at(HEALTH_LIVE, &[])).await
    }

    /// Whether it can serve: a refusal (503) is an [`Error::Api`](crate::Error::Api).
    pub async fn health_ready(&self) -> Result<Health> {
        self.fetch(self.at(HEALTH_READY, &[])).await
    }

    /// The AsyncAPI 3.0 document of the WebSocket protocol.
    pub async fn asyncapi(&self) -> Result<serde_json::Value> {
        self.fetch(self.at(ASYNCAPI, &[])).await
    }

    pub async fn admin_users(&self, query: &AdminListQuery) -> Result<AdminUsers> {
        self.fetch(self.at_query(ADMIN_USERS, &[], query)).await
    }

    /// Suspends an account: its sessions end and it cannot log in.
    pub async fn deactivate_user(&self, user_id: Uuid) -> Result<AdminUser> {
        self.fetch(self.at(DEACTIVATE, &[&user_id])).await
    }

    pub async fn reactivate_user(&self, user_id: Uuid) -> Result<AdminUser> {
        self.fetch(self.at(REACTIVATE, &[&user_id])).await
    }

    pub async fn admin_rooms(&self, query: &AdminListQuery) -> Result<AdminRooms> {
        self.fetch(self.at_query(ADMIN_ROOMS, &[], query)).await
    }

    pub async fn admin_delete_room(&self, room_id: Uuid) -> Result<()> {
        self.fetch_empty(self.at(ADMIN_DELETE_ROOM, &[&room_id]))
            .await
    }

    /// The moderation queue.
    pub async fn reports(&self, query: &ReportsQuery) -> Result<Reports> {
        self.fetch(self.at_query(REPORTS, &[], query)).await
    }

    pub async fn resolve_report(
        &self,
        report_id: Uuid,
        request: &ResolveReportRequest,
    ) -> Result<Report> {
        self.fetch(self.at(RESOLVE_REPORT, &[&report_id]).json(request))
            .await
    }

    pub async fn audit_log(&self, query: &AuditQuery) -> Result<AuditLog> {
        self.fetch(self.at_query(AUDIT, &[], query)).await
    }
}
