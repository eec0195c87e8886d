//! A server's database read directly, to prove what it holds: every row of a tenant in every
//! table that holds tenants' rows, as the database's own catalog lists them.

use super::Server;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::collections::BTreeMap;

/// How many rows of the tenant with id `tenant` each table holds: by `tenant_id`, by SQLite's
/// tenant number (`tenant`; a number no tenant has counts too: a deleted tenant's rows), or by
/// `contact_id` alone (rows of the tenant's contacts, or of no contact); and `tenants` itself.
pub async fn tenant_rows(server: &Server, tenant: &str) -> BTreeMap<String, i64> {
    match &server.database {
        Some(database) => {
            let mut conn = PgConnection::connect(&database.url).await.unwrap();
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() \
                 AND column_name IN ('tenant_id', 'contact_id') ORDER BY 1, 2",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let mut counts = BTreeMap::new();
            for (table, column) in owning_columns(columns) {
                let count: i64 =
                    sqlx::query_scalar(AssertSqlSafe(count_sql(&table, &column, "$1")))
                        .bind(tenant)
                        .fetch_one(&mut conn)
                        .await
                        .unwrap();
                counts.insert(table, count);
            }
            counts
        }
        None => {
            let conn = rusqlite::Connection::open(server.data_dir.path().join("waymark.db"))
                .expect("opening the server's SQLite database");
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .unwrap();
            let columns: Vec<(String, String)> = conn
                .prepare(
                    "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
                     WHERE m.type = 'table' AND p.name IN ('tenant_id', 'tenant', 'contact_id')",
                )
                .unwrap()
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            owning_columns(columns)
                .into_iter()
                .map(|(table, column)| {
                    let count = conn
                        .query_row(&count_sql(&table, &column, "?1"), [tenant], |row| {
                            row.get(0)
                        })
                        .unwrap();
                    (table, count)
                })
                .collect()
        }
    }
}

/// Per table, the column that says whose a row is: `tenant_id`, else `tenant`, else
/// `contact_id`; and `tenants` by id.
fn owning_columns(columns: Vec<(String, String)>) -> BTreeMap<String, String> {
    let rank = |column: &str| match column {
        "tenant_id" => 0,
        "tenant" => 1,
        _ => 2,
    };
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    for (table, column) in columns {
        if chosen
            .get(&table)
            .is_none_or(|current| rank(&column) < rank(current))
        {
            chosen.insert(table, column);
        }
    }
    chosen.insert("tenants".into(), "id".into());
    chosen
}

fn count_sql(table: &str, column: &str, param: &str) -> String {
    let of_tenant = match column {
        "tenant" => format!(
            "tenant = (SELECT number FROM tenants WHERE id = {param}) \
             OR tenant NOT IN (SELECT number FROM tenants)"
        ),
        "contact_id" => format!(
            "contact_id IN (SELECT id FROM contacts WHERE tenant_id = {param}) \
             OR contact_id NOT IN (SELECT id FROM contacts)"
        ),
        other => format!("{other} = {param}"),
    };
    format!("SELECT COUNT(*) FROM \"{table}\" WHERE {of_tenant}")
}
