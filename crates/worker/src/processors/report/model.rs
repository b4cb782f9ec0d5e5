//! What a report holds, whatever its format: a title, a few lines about it, one detail table (the
//! rows the report is about, and the only table of the csv export) and summary tables; built here
//! from the data ncy-store queried.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ncy_store::reports::{OrganizationActivity, ProjectTasks};

/// One cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    Int(i64),
    Empty,
}

impl Cell {
    /// The cell as text (what csv and pdf show).
    pub fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Empty => String::new(),
        }
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_owned())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}

impl From<i64> for Cell {
    fn from(n: i64) -> Self {
        Cell::Int(n)
    }
}

impl From<Option<String>> for Cell {
    fn from(s: Option<String>) -> Self {
        s.map_or(Cell::Empty, Cell::Text)
    }
}

/// A named table with a header row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    fn new(name: &str, headers: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }
}

/// A report ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub title: String,
    pub lines: Vec<String>,
    pub detail: Table,
    pub summaries: Vec<Table>,
}

/// A time as the reports show it (`2026-11-26 02:30 UTC`).
pub fn format_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// The project_tasks report: every task, then counts by status and by assignee.
pub fn project_tasks(data: &ProjectTasks, generated_ms: i64) -> Report {
    let mut detail = Table::new(
        "Tasks",
        &[
            "Title",
            "Status",
            "Priority",
            "Assignee",
            "Assignee email",
            "Due",
            "Created",
        ],
    );
    let mut by_status: BTreeMap<&str, i64> = BTreeMap::new();
    let mut by_assignee: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for t in &data.tasks {
        detail.rows.push(vec![
            t.title.as_str().into(),
            t.status.as_str().into(),
            i64::from(t.priority).into(),
            t.assignee_name.clone().into(),
            t.assignee_email.clone().into(),
            t.due_at_ms.map(format_ms).into(),
            format_ms(t.created_at_ms).into(),
        ]);
        *by_status.entry(t.status.as_str()).or_default() += 1;
        let who = match (&t.assignee_name, &t.assignee_email) {
            (Some(n), Some(e)) => format!("{n} <{e}>"),
            _ => "(unassigned)".to_owned(),
        };
        let entry = by_assignee.entry(who).or_default();
        entry.0 += 1;
        entry.1 += i64::from(t.status == "done");
    }
    let mut status = Table::new("By status", &["Status", "Tasks"]);
    status.rows = by_status
        .into_iter()
        .map(|(s, n)| vec![s.into(), n.into()])
        .collect();
    let mut assignee = Table::new("By assignee", &["Assignee", "Tasks", "Done"]);
    assignee.rows = by_assignee
        .into_iter()
        .map(|(who, (n, done))| vec![who.into(), n.into(), done.into()])
        .collect();
    Report {
        title: format!("Tasks of project {}", data.project_name),
        lines: vec![
            format!("Organization: {}", data.organization_name),
            format!("Tasks: {}", data.tasks.len()),
            format!("Generated: {}", format_ms(generated_ms)),
        ],
        detail,
        summaries: vec![status, assignee],
    }
}

/// The organization_activity report: per member counts, totals, and the projects created.
pub fn organization_activity(
    data: &OrganizationActivity,
    from_ms: i64,
    to_ms: i64,
    generated_ms: i64,
) -> Report {
    let mut detail = Table::new(
        "Members",
        &[
            "Member",
            "Email",
            "Role",
            "Projects created",
            "Tasks assigned",
            "Tasks completed",
        ],
    );
    detail.rows = data
        .members
        .iter()
        .map(|m| {
            vec![
                m.name.as_str().into(),
                m.email.as_str().into(),
                m.role.as_str().into(),
                m.projects_created.into(),
                m.tasks_assigned.into(),
                m.tasks_completed.into(),
            ]
        })
        .collect();
    let mut totals = Table::new("Totals", &["Metric", "Count"]);
    let projects = i64::try_from(data.projects_created.len()).unwrap_or(i64::MAX);
    totals.rows = vec![
        vec!["Projects created".into(), projects.into()],
        vec!["Tasks created".into(), data.tasks_created.into()],
        vec!["Tasks completed".into(), data.tasks_completed.into()],
        vec![
            "Members".into(),
            i64::try_from(data.members.len()).unwrap_or(i64::MAX).into(),
        ],
    ];
    let mut created = Table::new(
        "Projects created",
        &[
            "Project",
            "Created by",
            "Created",
            "Tasks created",
            "Tasks completed",
        ],
    );
    created.rows = data
        .projects_created
        .iter()
        .map(|p| {
            vec![
                p.name.as_str().into(),
                p.created_by.clone().into(),
                format_ms(p.created_at_ms).into(),
                p.tasks_created.into(),
                p.tasks_completed.into(),
            ]
        })
        .collect();
    Report {
        title: format!("Activity of {}", data.organization_name),
        lines: vec![
            format!("Period: {} to {}", format_ms(from_ms), format_ms(to_ms)),
            format!("Generated: {}", format_ms(generated_ms)),
        ],
        detail,
        summaries: vec![totals, created],
    }
}
