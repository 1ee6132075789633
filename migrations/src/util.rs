use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// `org_id`: every table that belongs to an office carries it, with a foreign key.
pub fn org_id(table: &'static str) -> (ColumnDef, ForeignKeyCreateStatement) {
    (
        big_integer("org_id"),
        ForeignKey::create()
            .name(format!("fk_{table}_org"))
            .from(table, "org_id")
            .to("organizations", "id")
            .on_delete(ForeignKeyAction::Restrict)
            .to_owned(),
    )
}

/// A foreign key from `table.column` to `target.id`.
pub fn fk(
    table: &'static str,
    column: &'static str,
    target: &'static str,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_{column}"))
        .from(table, column)
        .to(target, "id")
        .on_delete(ForeignKeyAction::Restrict)
        .to_owned()
}

pub fn created_at() -> ColumnDef {
    timestamp_with_time_zone("created_at")
}

pub async fn index(
    manager: &SchemaManager<'_>,
    table: &'static str,
    name: &str,
    columns: &[&'static str],
    unique: bool,
) -> Result<(), DbErr> {
    let mut stmt = Index::create();
    stmt.name(name).table(table).if_not_exists();
    for c in columns {
        stmt.col(*c);
    }
    if unique {
        stmt.unique();
    }
    manager.create_index(stmt).await
}
