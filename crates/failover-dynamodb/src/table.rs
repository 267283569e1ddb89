//! Creating the usage table.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};

use crate::error::{DynamoDbError, classify};
use crate::item::{AGENT_INDEX, GSI1_PK, GSI1_SK, PK, SK, TTL_ATTRIBUTE};
use crate::telemetry::{CREATE_TABLE, DESCRIBE_TABLE, UPDATE_TIME_TO_LIVE, time_table_call};

/// Options of [`create_table`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableOptions {
    /// Enable TTL on the `expires_at` attribute (set on raw records when the sink has
    /// `ttl_days`).
    pub ttl: bool,
    /// How long to wait for the table to become `ACTIVE`.
    pub wait_active: Duration,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            ttl: true,
            wait_active: Duration::from_secs(120),
        }
    }
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, DynamoDbError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| DynamoDbError::Config(e.to_string()))
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, DynamoDbError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| DynamoDbError::Config(e.to_string()))
}

/// Creates the usage table (on-demand billing): `pk`/`sk` strings, the `by_agent` global
/// secondary index (`gsi1pk`/`gsi1sk`, all attributes projected), TTL on `expires_at` when
/// `options.ttl`; waits until it is `ACTIVE`. The same schema as the `aws dynamodb
/// create-table` command in `docs/operations.md`.
pub async fn create_table(
    client: &Client,
    table_name: &str,
    options: &TableOptions,
) -> Result<(), DynamoDbError> {
    let index = GlobalSecondaryIndex::builder()
        .index_name(AGENT_INDEX)
        .key_schema(key(GSI1_PK, KeyType::Hash)?)
        .key_schema(key(GSI1_SK, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| DynamoDbError::Config(e.to_string()))?;
    let request = client
        .create_table()
        .table_name(table_name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute(PK)?)
        .attribute_definitions(string_attribute(SK)?)
        .attribute_definitions(string_attribute(GSI1_PK)?)
        .attribute_definitions(string_attribute(GSI1_SK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(index)
        .send();
    time_table_call(CREATE_TABLE, request)
        .await
        .map_err(|e| classify(CREATE_TABLE, &e))?;
    wait_active(client, table_name, options.wait_active).await?;
    if options.ttl {
        let request = client
            .update_time_to_live()
            .table_name(table_name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .map_err(|e| DynamoDbError::Config(e.to_string()))?,
            )
            .send();
        time_table_call(UPDATE_TIME_TO_LIVE, request)
            .await
            .map_err(|e| classify(UPDATE_TIME_TO_LIVE, &e))?;
    }
    Ok(())
}

/// [`create_table`] unless the table exists already.
pub async fn create_table_if_missing(
    client: &Client,
    table_name: &str,
    options: &TableOptions,
) -> Result<bool, DynamoDbError> {
    // A missing table is an `error` sample: the call failed, whatever this function makes
    // of it.
    let request = client.describe_table().table_name(table_name).send();
    match time_table_call(DESCRIBE_TABLE, request).await {
        Ok(_) => Ok(false),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            create_table(client, table_name, options).await?;
            Ok(true)
        }
        Err(error) => Err(classify(DESCRIBE_TABLE, &error)),
    }
}

async fn wait_active(
    client: &Client,
    table_name: &str,
    limit: Duration,
) -> Result<(), DynamoDbError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let request = client.describe_table().table_name(table_name).send();
        let described = time_table_call(DESCRIBE_TABLE, request)
            .await
            .map_err(|e| classify(DESCRIBE_TABLE, &e))?;
        let status = described.table().and_then(|t| t.table_status());
        if status == Some(&TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DynamoDbError::Config(format!(
                "table {table_name} not ACTIVE after {limit:?} (status {status:?})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
