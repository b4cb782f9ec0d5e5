//! Who may read a report's data, against the demo data set on a real, migrated database: Ada owns
//! Acme and is a viewer of Globex; Grace is a member of Acme only; Alan owns Globex.
use ncy_store::access::{organization_member, project_member};
use ncy_testkit::TestDatabase;
use uuid::Uuid;

/// A demo id: `00000000-0000-4000-8000-<n as 12 hex digits>`.
fn id(n: u64) -> Uuid {
    Uuid::from_u128((0x4000_8000_u128 << 48) | u128::from(n))
}

#[tokio::test]
async fn members_of_the_owning_organization_may_read_and_no_one_else() -> anyhow::Result<()> {
    let db = TestDatabase::migrated().await?;
    let pool = db.pool().await?;
    ncy_store::seed(&pool).await?;
    let (ada, grace, alan) = (id(1), id(2), id(3));
    let (acme, globex) = (id(0x101), id(0x102));
    let (website, data_platform) = (id(0x201), id(0x203));

    assert_eq!(organization_member(&pool, acme, ada).await?, Some(true));
    assert_eq!(organization_member(&pool, acme, grace).await?, Some(true));
    assert_eq!(organization_member(&pool, acme, alan).await?, Some(false));
    assert_eq!(
        organization_member(&pool, globex, ada).await?,
        Some(true),
        "a viewer"
    );
    assert_eq!(
        organization_member(&pool, globex, grace).await?,
        Some(false)
    );
    assert_eq!(organization_member(&pool, Uuid::new_v4(), ada).await?, None);

    assert_eq!(project_member(&pool, website, grace).await?, Some(true));
    assert_eq!(project_member(&pool, website, alan).await?, Some(false));
    assert_eq!(
        project_member(&pool, data_platform, grace).await?,
        Some(false)
    );
    assert_eq!(project_member(&pool, data_platform, ada).await?, Some(true));
    assert_eq!(
        project_member(&pool, website, Uuid::new_v4()).await?,
        Some(false)
    );
    assert_eq!(project_member(&pool, Uuid::new_v4(), ada).await?, None);
    Ok(())
}
