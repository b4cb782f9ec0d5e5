//! Who belongs where: the one definition of membership that every service applies — the realtime
//! gateway for its `org:` and `project:` rooms, the worker for who may read a report. A user
//! belongs to an organization when a row of `organization_members` says so (any role), and to a
//! project through the project's organization.
use sqlx::PgPool;
use uuid::Uuid;

use crate::StoreError;

/// Whether `user_id` is a member of the organization that owns project `project_id`: `None` when
/// there is no such project.
pub async fn project_member(
    pool: &PgPool,
    project_id: Uuid,
    user_id: Uuid,
) -> Result<Option<bool>, StoreError> {
    Ok(sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM organization_members m
                        WHERE m.organization_id = p.organization_id AND m.user_id = $2)
         FROM projects p WHERE p.id = $1",
    )
    .bind(project_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?)
}

/// Whether `user_id` is a member of organization `organization_id`: `None` when there is no such
/// organization.
pub async fn organization_member(
    pool: &PgPool,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<Option<bool>, StoreError> {
    Ok(sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM organization_members m
                        WHERE m.organization_id = o.id AND m.user_id = $2)
         FROM organizations o WHERE o.id = $1",
    )
    .bind(organization_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?)
}
