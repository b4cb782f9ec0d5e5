//! The data of the worker's reports: a project's tasks with their assignees, and an
//! organization's activity over a period. `None` when the project or organization does not exist,
//! so the caller can tell "nothing to report on" from "database down".
//!
//! The schema has no completion time: a task counts as completed in a period when its status is
//! `done` and its last update falls in the period.
//!
//! Who may read a report: a member of the organization that owns its data (any role, `viewer`
//! included: a report only reads), as [`crate::access`] answers it before any data is read.
use sqlx::PgPool;
use uuid::Uuid;

use crate::StoreError;

/// A task row of the project report.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TaskRow {
    pub title: String,
    pub status: String,
    pub priority: i16,
    pub assignee_name: Option<String>,
    pub assignee_email: Option<String>,
    /// Due date, ms since the Unix epoch.
    pub due_at_ms: Option<i64>,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: i64,
}

/// A project and its tasks (by status, then priority, then creation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectTasks {
    pub project_name: String,
    pub organization_name: String,
    pub tasks: Vec<TaskRow>,
}

/// The tasks of `project_id`, or `None` when there is no such project.
pub async fn project_tasks(
    pool: &PgPool,
    project_id: Uuid,
) -> Result<Option<ProjectTasks>, StoreError> {
    let Some((project_name, organization_name)) = sqlx::query_as::<_, (String, String)>(
        "SELECT p.name, o.name FROM projects p JOIN organizations o ON o.id = p.organization_id
         WHERE p.id = $1",
    )
    .bind(project_id)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let tasks = sqlx::query_as::<_, TaskRow>(
        "SELECT t.title, t.status, t.priority, u.name AS assignee_name, u.email AS assignee_email,
                (extract(epoch FROM t.due_at) * 1000)::bigint AS due_at_ms,
                (extract(epoch FROM t.created_at) * 1000)::bigint AS created_at_ms
         FROM tasks t LEFT JOIN users u ON u.id = t.assignee_id
         WHERE t.project_id = $1
         ORDER BY array_position(ARRAY['todo','in_progress','review','done','cancelled'], t.status),
                  t.priority DESC, t.created_at, t.id",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await?;
    Ok(Some(ProjectTasks {
        project_name,
        organization_name,
        tasks,
    }))
}

/// A project created in the period.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProjectCreated {
    pub name: String,
    pub created_by: Option<String>,
    pub created_at_ms: i64,
    /// Tasks of the project created in the period.
    pub tasks_created: i64,
    /// Tasks of the project completed in the period.
    pub tasks_completed: i64,
}

/// What one member did in the period.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MemberActivity {
    pub name: String,
    pub email: String,
    pub role: String,
    pub projects_created: i64,
    /// Tasks assigned to the member, created in the period.
    pub tasks_assigned: i64,
    /// Tasks assigned to the member, completed in the period.
    pub tasks_completed: i64,
}

/// An organization's activity in `[from_ms, to_ms]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationActivity {
    pub organization_name: String,
    pub projects_created: Vec<ProjectCreated>,
    pub tasks_created: i64,
    pub tasks_completed: i64,
    pub members: Vec<MemberActivity>,
}

/// The activity of `organization_id` between `from_ms` and `to_ms` (inclusive), or `None` when
/// there is no such organization.
pub async fn organization_activity(
    pool: &PgPool,
    organization_id: Uuid,
    from_ms: i64,
    to_ms: i64,
) -> Result<Option<OrganizationActivity>, StoreError> {
    let Some(organization_name) =
        sqlx::query_scalar::<_, String>("SELECT name FROM organizations WHERE id = $1")
            .bind(organization_id)
            .fetch_optional(pool)
            .await?
    else {
        return Ok(None);
    };
    // The period as timestamps, shared by the queries below.
    const PERIOD: &str = "to_timestamp($2::float8 / 1000) AND to_timestamp($3::float8 / 1000)";
    let projects_created = sqlx::query_as::<_, ProjectCreated>(&format!(
        "SELECT p.name, u.name AS created_by,
                (extract(epoch FROM p.created_at) * 1000)::bigint AS created_at_ms,
                (SELECT count(*) FROM tasks t WHERE t.project_id = p.id
                    AND t.created_at BETWEEN {PERIOD}) AS tasks_created,
                (SELECT count(*) FROM tasks t WHERE t.project_id = p.id AND t.status = 'done'
                    AND t.updated_at BETWEEN {PERIOD}) AS tasks_completed
         FROM projects p LEFT JOIN users u ON u.id = p.created_by
         WHERE p.organization_id = $1 AND p.created_at BETWEEN {PERIOD}
         ORDER BY p.created_at, p.id"
    ))
    .bind(organization_id)
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(pool)
    .await?;
    let (tasks_created, tasks_completed) = sqlx::query_as::<_, (i64, i64)>(&format!(
        "SELECT count(*) FILTER (WHERE t.created_at BETWEEN {PERIOD}),
                count(*) FILTER (WHERE t.status = 'done' AND t.updated_at BETWEEN {PERIOD})
         FROM tasks t JOIN projects p ON p.id = t.project_id WHERE p.organization_id = $1"
    ))
    .bind(organization_id)
    .bind(from_ms)
    .bind(to_ms)
    .fetch_one(pool)
    .await?;
    let members = sqlx::query_as::<_, MemberActivity>(&format!(
        "SELECT u.name, u.email, m.role,
                (SELECT count(*) FROM projects p WHERE p.organization_id = $1
                    AND p.created_by = u.id AND p.created_at BETWEEN {PERIOD}) AS projects_created,
                (SELECT count(*) FROM tasks t JOIN projects p ON p.id = t.project_id
                    WHERE p.organization_id = $1 AND t.assignee_id = u.id
                    AND t.created_at BETWEEN {PERIOD}) AS tasks_assigned,
                (SELECT count(*) FROM tasks t JOIN projects p ON p.id = t.project_id
                    WHERE p.organization_id = $1 AND t.assignee_id = u.id AND t.status = 'done'
                    AND t.updated_at BETWEEN {PERIOD}) AS tasks_completed
         FROM organization_members m JOIN users u ON u.id = m.user_id
         WHERE m.organization_id = $1
         ORDER BY u.name, u.email"
    ))
    .bind(organization_id)
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(pool)
    .await?;
    Ok(Some(OrganizationActivity {
        organization_name,
        projects_created,
        tasks_created,
        tasks_completed,
        members,
    }))
}
