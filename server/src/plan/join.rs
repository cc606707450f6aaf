//! Planning joins: which sources a query joins and how (stream–stream within a window,
//! stream–table, table–table on primary keys), on which key expressions, with ksqlDB's
//! rules and messages, and the query over the joined rows.
//!
//! Every column of a joined source is renamed `ALIAS_COLUMN` (ksqlDB's names: `SELECT *`
//! over `L JOIN R` gives `L_A, L_B, R_A, …`); the query's references are rewritten to those
//! names (`L.A` → `L_A`, an unqualified `B` → the one source that has it), and the query is
//! then planned like a query over one source whose rows are the joined rows. Entry point:
//! [`Planner::plan_join`].

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::empty::EmptyTable;
use datafusion::common::TableReference;
use datafusion::physical_expr::PhysicalExpr;
use riffle_grammar::ast::{JoinKind, Query, Relation, SourceKind, SourceRef};
use sqlparser::ast::{
    BinaryOperator, Expr as SqlExpr, Ident, SelectItem, SelectItemQualifiedWildcardKind, VisitMut,
    VisitorMut,
};

use super::{PlanError, Planner, StatelessPlan};
use crate::catalog::{PSEUDO_COLUMNS, Source};
use crate::runtime::join::{ROWTIME, StepMode};
use crate::types::SqlType;

/// A source of a join and the name its columns are qualified with.
#[derive(Debug, Clone)]
pub struct JoinInput {
    pub source: Source,
    /// The alias (or the source's name): columns are named `ALIAS_COLUMN`.
    pub alias: String,
    /// The source's decoded columns (keys, values, headers, pseudo columns), renamed.
    pub schema: SchemaRef,
}

/// One binary join of the chain: the rows so far (left) with the next source (right).
#[derive(Debug, Clone)]
pub struct JoinStepPlan {
    pub kind: JoinKind,
    pub mode: StepMode,
    /// The left input's rows: input 0's, or the previous step's output.
    pub left_schema: SchemaRef,
    /// Over `left_schema`.
    pub left_key: Arc<dyn PhysicalExpr>,
    pub right_schema: SchemaRef,
    /// Over `right_schema`.
    pub right_key: Arc<dyn PhysicalExpr>,
    pub key_type: DataType,
    /// The output's key column.
    pub key_name: String,
    /// Foreign-key joins: the left table's own key columns in `left_schema`.
    pub left_primary_key: Vec<usize>,
    /// Joins of windowed sources: the window bound columns (start, end) of the left and
    /// the right input, which are part of the join key.
    pub window_bounds: Option<[(String, String); 2]>,
}

/// What the result's key column is.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinKey {
    /// The join expressions are source columns: any of these (joined name, as written)
    /// selected becomes the key.
    Columns(Vec<(String, String)>),
    /// Neither side is a column (or the join is FULL OUTER): a new column of this name.
    Synthetic(String),
    /// A foreign-key join keeps the left table's key: all of these (joined name, name)
    /// must be selected; `.0` is the table's name.
    LeftTable(String, Vec<(String, String)>),
}

/// A planned join query.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub inputs: Vec<JoinInput>,
    pub steps: Vec<JoinStepPlan>,
    /// Filter and projection over the joined rows ([`JoinPlan::joined_schema`]).
    pub output: StatelessPlan,
    pub key: JoinKey,
    /// A stream unless every source is a table.
    pub kind: SourceKind,
    /// The last step's output with the row-number column the output plan sees.
    pub joined_schema: SchemaRef,
    /// `PARTITION BY`: the output columns (by position) that are the new key, in order.
    pub partition_keys: Vec<usize>,
}

/// The column numbering a joined batch's rows for the output plan (it maps failures and
/// filtered rows back to their joined rows).
pub const JOINED_ROW: &str = "ROWOFFSET";

impl JoinPlan {
    /// The joined batch's key column: the last step's.
    pub fn key_column(&self) -> &str {
        self.steps
            .last()
            .map(|s| s.key_name.as_str())
            .unwrap_or(ROWTIME)
    }
}

/// Grace of a join without `GRACE PERIOD`: what is left of 24 hours after the window,
/// as Kafka Streams' `JoinWindows.of` keeps rows.
const LEGACY_RETENTION_MS: i64 = 24 * 3_600_000;

/// A joined source as name resolution sees it.
struct Named {
    alias: String,
    name: String,
    columns: Vec<String>,
    /// `*` stands for these (keys and values).
    star: Vec<String>,
    /// With `PARTITION BY`, `*` stands for these: values, pseudo columns, then keys.
    partitioned_star: Vec<String>,
}

impl Planner {
    /// Plans a query with joins over `sources` (the `FROM` source, then each joined one).
    pub async fn plan_join(
        &self,
        query: &Query,
        sources: Vec<Source>,
    ) -> Result<JoinPlan, PlanError> {
        let refs: Vec<&SourceRef> = std::iter::once(&query.from.source)
            .chain(query.from.joins.iter().map(|j| &j.source))
            .collect();
        check_sources(&refs, &sources)?;
        let inputs: Vec<JoinInput> = refs
            .iter()
            .zip(sources)
            .map(|(r, source)| {
                let alias = r.alias.as_ref().unwrap_or(&r.name).value.clone();
                let schema = prefixed(&source.arrow_schema(), &alias);
                JoinInput {
                    source,
                    alias,
                    schema,
                }
            })
            .collect();
        let named = named_inputs(&inputs);
        let mut steps: Vec<JoinStepPlan> = Vec::new();
        let mut left_schema = inputs[0].schema.clone();
        let mut left_kind = inputs[0].source.kind;
        let mut key = JoinKey::Synthetic(String::new());
        let last = query.from.joins.len() - 1;
        for (index, join) in query.from.joins.iter().enumerate() {
            let right = &inputs[index + 1];
            let condition = JoinCondition::of(join.on.clone(), &named[..=index + 1])?;
            let mode = join_mode(join, (&inputs[..=index], left_kind), right)?;
            let left_key = self.plan_expression(&condition.left, &left_schema).await?;
            let right_key = self
                .plan_expression(&condition.right, &right.schema)
                .await?;
            let (left_type, right_type) = (
                left_key.data_type(&left_schema)?,
                right_key.data_type(&right.schema)?,
            );
            if left_type != right_type {
                let type_name =
                    |t: &DataType| SqlType::from_arrow(t).map_or(t.to_string(), |t| t.to_string());
                return Err(PlanError::Plan(format!(
                    "Invalid join condition: types don't match. Got {}{{{}}} = {}{{{}}}.",
                    condition.left_written(),
                    type_name(&left_type),
                    condition.right_written(),
                    type_name(&right_type)
                )));
            }
            check_key_type(&condition, &left_type)?;
            let mode = check_table_keys(mode, join.kind, &condition, &inputs[..=index + 1])?;
            let window_bounds = window_bounds(&inputs[..=index + 1], &condition, mode)?;
            let key_type = match &window_bounds {
                Some(_) => windowed_key_type(&left_type),
                None => left_type,
            };
            let synthetic = join.kind == JoinKind::Full
                || (condition.left_column.is_none() && condition.right_column.is_none());
            let mut left_primary_key = Vec::new();
            key = if mode == StepMode::ForeignKey {
                if index > 0 {
                    return Err(PlanError::Unsupported(
                        "A foreign-key join after another join".into(),
                    ));
                }
                let table = &inputs[0];
                let keys: Vec<(String, String)> = table
                    .source
                    .schema
                    .keys()
                    .map(|c| (joined_name(&table.alias, &c.name), c.name.clone()))
                    .collect();
                left_primary_key = (0..keys.len()).collect();
                JoinKey::LeftTable(table.source.name.clone(), keys)
            } else if synthetic {
                JoinKey::Synthetic(synthetic_key_name(&named))
            } else {
                JoinKey::Columns(
                    [&condition.left_column, &condition.right_column]
                        .into_iter()
                        .flatten()
                        .cloned()
                        .collect(),
                )
            };
            let key_name = match (&key, index == last) {
                (JoinKey::Synthetic(name), true) => name.clone(),
                _ => format!("__RIFFLE_JOIN_KEY_{index}"),
            };
            let mut fields: Vec<Field> = carried(&left_schema, index > 0)
                .chain(right.schema.fields().iter().map(|f| f.as_ref().clone()))
                .collect();
            fields.push(Field::new(ROWTIME, DataType::Int64, true));
            fields.push(Field::new(&key_name, key_type.clone(), true));
            let output_schema = Arc::new(Schema::new(fields));
            left_kind = match (left_kind, right.source.kind) {
                (SourceKind::Table, SourceKind::Table) => SourceKind::Table,
                _ => SourceKind::Stream,
            };
            steps.push(JoinStepPlan {
                kind: join.kind,
                mode,
                left_schema: std::mem::replace(&mut left_schema, output_schema),
                left_key,
                right_schema: right.schema.clone(),
                right_key,
                key_type,
                key_name,
                left_primary_key,
                window_bounds,
            });
        }
        let mut fields: Vec<Field> = left_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(JOINED_ROW, DataType::Int64, false));
        let joined_schema = Arc::new(Schema::new(fields));
        let (output, partition_keys) = self
            .plan_joined_query(query, &named, &key, &joined_schema)
            .await?;
        Ok(JoinPlan {
            inputs,
            steps,
            output,
            key,
            kind: left_kind,
            joined_schema,
            partition_keys,
        })
    }

    /// Plans one expression (already in joined names) over rows of `schema`.
    async fn plan_expression(
        &self,
        expr: &SqlExpr,
        schema: &SchemaRef,
    ) -> Result<Arc<dyn PhysicalExpr>, PlanError> {
        let query = over_table(
            vec![SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: Ident::new("JOIN_KEY"),
            }],
            None,
        );
        let plan = self.with_table(schema, query, &[]).await?;
        plan.projection
            .into_iter()
            .next()
            .map(|c| c.expr)
            .ok_or_else(|| PlanError::Plan("internal: a join key without expression".into()))
    }

    /// Plans `query` (over the table named in it) with a table of `schema` registered
    /// under that name for the time of planning.
    async fn with_table(
        &self,
        schema: &SchemaRef,
        mut query: Query,
        star_columns: &[String],
    ) -> Result<StatelessPlan, PlanError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let table = format!(
            "__JOINED_{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        query.from.source.name = Ident::new(table.clone());
        self.context.register_table(
            TableReference::bare(table.clone()),
            Arc::new(EmptyTable::new(schema.clone())),
        )?;
        let planned = self.plan_stateless(&query, star_columns).await;
        let _ = self.context.deregister_table(TableReference::bare(table));
        planned
    }

    /// The query's projection and `WHERE` over the joined rows, and which output columns
    /// its `PARTITION BY` makes the key.
    async fn plan_joined_query(
        &self,
        query: &Query,
        named: &[Named],
        key: &JoinKey,
        joined: &SchemaRef,
    ) -> Result<(StatelessPlan, Vec<usize>), PlanError> {
        if !query.group_by.is_empty() || query.window.is_some() {
            return Err(PlanError::Unsupported("aggregating joined rows".into()));
        }
        let partitioned = !query.partition_by.is_empty();
        let synthetic = match key {
            JoinKey::Synthetic(name) => Some(name.as_str()),
            JoinKey::Columns(_) | JoinKey::LeftTable(..) => None,
        };
        let star: Vec<String> = synthetic
            .map(str::to_string)
            .into_iter()
            .chain(named.iter().flat_map(|n| {
                let columns = if partitioned {
                    &n.partitioned_star
                } else {
                    &n.star
                };
                columns.iter().map(move |c| joined_name(&n.alias, c))
            }))
            .filter(|c| !partitioned || Some(c.as_str()) != synthetic)
            .collect();
        let mut projection = Vec::with_capacity(query.projection.len());
        for item in &query.projection {
            match item {
                SelectItem::Wildcard(_) => projection.extend(star.iter().map(|c| column(c))),
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(q),
                    _,
                ) => {
                    let qualifier = q.to_string();
                    let source = find_qualifier(named, &qualifier)?;
                    projection.extend(
                        source
                            .star
                            .iter()
                            .map(|c| column(&joined_name(&source.alias, c))),
                    );
                }
                SelectItem::UnnamedExpr(expr) => {
                    let name = output_name(expr, named);
                    let expr = resolve(expr.clone(), named, synthetic, "SELECT")?.0;
                    projection.push(match name {
                        Some(alias) => SelectItem::ExprWithAlias {
                            expr,
                            alias: Ident::new(alias),
                        },
                        None => SelectItem::UnnamedExpr(expr),
                    });
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    projection.push(SelectItem::ExprWithAlias {
                        expr: resolve(expr.clone(), named, synthetic, "SELECT")?.0,
                        alias: alias.clone(),
                    })
                }
                other => projection.push(other.clone()),
            }
        }
        let selection = query
            .selection
            .clone()
            .map(|w| resolve(w, named, synthetic, "WHERE").map(|r| r.0))
            .transpose()?;
        let starred = query
            .projection
            .iter()
            .any(|item| matches!(item, SelectItem::Wildcard(_)));
        let mut partition_keys = Vec::new();
        for expr in &query.partition_by {
            let expr = unnested(resolve(expr.clone(), named, synthetic, "PARTITION BY")?.0);
            let canonical = |e: &SqlExpr| match e {
                SqlExpr::Identifier(ident) => ident.value.clone(),
                other => other.to_string(),
            };
            let text = canonical(&expr);
            let found = projection.iter().position(|item| match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    canonical(e) == text
                }
                _ => false,
            });
            match found {
                Some(index) => partition_keys.push(index),
                None if starred => {
                    projection.push(SelectItem::UnnamedExpr(expr));
                    partition_keys.push(projection.len() - 1);
                }
                None => {
                    return Err(PlanError::Plan(format!(
                        "The query must include the partitioning expression {text} in its \
                         projection (eg, SELECT {text}...)."
                    )));
                }
            }
        }
        let plan = self
            .with_table(joined, over_table(projection, selection), &star)
            .await?;
        Ok((plan, partition_keys))
    }
}

impl JoinPlan {
    /// The aggregation of a query that groups joined rows, over `joined` (the source whose
    /// rows are this join's `SELECT *`): its references in joined names (`I1.BAR` →
    /// `I1_BAR`), a selected column named as the join's `SELECT` names it.
    pub fn aggregation_over_joined(&self, query: &Query, joined: &str) -> Result<Query, PlanError> {
        let named = named_inputs(&self.inputs);
        let synthetic = match &self.key {
            JoinKey::Synthetic(name) => Some(name.as_str()),
            JoinKey::Columns(_) | JoinKey::LeftTable(..) => None,
        };
        let resolved = |expr: &SqlExpr, clause: &str| {
            resolve(expr.clone(), &named, synthetic, clause).map(|r| r.0)
        };
        let mut projection = Vec::with_capacity(query.projection.len());
        for item in &query.projection {
            projection.push(match item {
                SelectItem::UnnamedExpr(expr) => {
                    let resolved = resolved(expr, "SELECT")?;
                    match output_name(expr, &named) {
                        Some(alias) => SelectItem::ExprWithAlias {
                            expr: resolved,
                            alias: Ident::new(alias),
                        },
                        None => SelectItem::UnnamedExpr(resolved),
                    }
                }
                SelectItem::ExprWithAlias { expr, alias } => SelectItem::ExprWithAlias {
                    expr: resolved(expr, "SELECT")?,
                    alias: alias.clone(),
                },
                other => other.clone(),
            });
        }
        let group_by = query
            .group_by
            .iter()
            .map(|expr| resolved(expr, "GROUP BY"))
            .collect::<Result<Vec<_>, _>>()?;
        let having = query
            .having
            .as_ref()
            .map(|expr| resolved(expr, "HAVING"))
            .transpose()?;
        Ok(Query {
            projection,
            from: Relation {
                source: SourceRef {
                    name: Ident::new(joined),
                    alias: None,
                },
                joins: Vec::new(),
            },
            window: query.window,
            // The join applies the `WHERE`.
            selection: None,
            group_by,
            partition_by: Vec::new(),
            having,
            emit: query.emit,
            limit: query.limit,
        })
    }
}

/// `SELECT projection FROM <table> [WHERE selection]` (the table is named by
/// [`Planner::with_table`]).
fn over_table(projection: Vec<SelectItem>, selection: Option<SqlExpr>) -> Query {
    Query {
        projection,
        from: Relation {
            source: SourceRef {
                name: Ident::new(""),
                alias: None,
            },
            joins: Vec::new(),
        },
        window: None,
        selection,
        group_by: Vec::new(),
        partition_by: Vec::new(),
        having: None,
        emit: None,
        limit: None,
    }
}

fn column(name: &str) -> SelectItem {
    SelectItem::UnnamedExpr(SqlExpr::Identifier(Ident::new(name)))
}

/// ksqlDB's name of a source column in joined rows.
pub fn joined_name(alias: &str, column: &str) -> String {
    format!("{alias}_{column}")
}

fn prefixed(schema: &SchemaRef, alias: &str) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                f.as_ref()
                    .clone()
                    .with_name(joined_name(alias, f.name()))
                    .with_nullable(true)
            })
            .collect::<Vec<_>>(),
    ))
}

/// The fields a step carries from its left input: all of a source's; of an earlier
/// step's output, all but its time and key.
fn carried(schema: &SchemaRef, joined: bool) -> impl Iterator<Item = Field> + '_ {
    let count = schema.fields().len() - if joined { 2 } else { 0 };
    schema.fields()[..count].iter().map(|f| f.as_ref().clone())
}

/// Which sources cannot be joined at all.
fn check_sources(refs: &[&SourceRef], sources: &[Source]) -> Result<(), PlanError> {
    for (i, source) in sources.iter().enumerate() {
        if let Some(earlier) = sources[..i].iter().find(|s| s.name == source.name) {
            return Err(PlanError::Plan(format!(
                "Can not join '{}' to '{}': self joins are not yet supported.",
                earlier.name, source.name
            )));
        }
    }
    let kafka: Vec<&str> = sources
        .iter()
        .filter(|s| s.value_format.format == crate::format::Format::Kafka)
        .map(|s| s.name.as_str())
        .collect();
    if !kafka.is_empty() {
        return Err(PlanError::Plan(format!(
            "Source(s) {} are using the 'KAFKA' value format. This format does not yet support \
             JOIN.",
            kafka.join(", ")
        )));
    }
    let windows: Vec<(&str, Option<crate::plan::aggregate::WindowKind>)> = refs
        .iter()
        .zip(sources)
        .map(|(r, s)| (r.name.value.as_str(), s.window))
        .collect();
    if let (Some((windowed, Some(kind))), Some((plain, None))) = (
        windows.iter().find(|(_, w)| w.is_some()),
        windows.iter().find(|(_, w)| w.is_none()),
    ) {
        return Err(PlanError::Plan(format!(
            "Can not join windowed source to non-windowed source.\n`{windowed}` is {} \
             windowed\n`{plain}` is not windowed",
            kind.name()
        )));
    }
    let kinds: Vec<crate::plan::aggregate::WindowKind> =
        windows.iter().filter_map(|(_, w)| *w).collect();
    if let [left, right, ..] = kinds.as_slice() {
        let session = |k: &crate::plan::aggregate::WindowKind| {
            matches!(k, crate::plan::aggregate::WindowKind::Session { .. })
        };
        if session(left) != session(right) {
            return Err(PlanError::Plan(format!(
                "Incompatible windowed sources.\nLeft source: {}\nRight source: {}\nSession \
                 windowed sources can only be joined to other session windowed sources, and may \
                 still not result in expected behaviour as session bounds must be an exact \
                 match for the join to work\nHopping and tumbling windowed sources can only be \
                 joined to other hopping and tumbling windowed sources",
                left.name(),
                right.name()
            )));
        }
        if left != right {
            return Err(PlanError::Plan(
                "Implicit repartitioning of windowed sources is not supported. See \
                 https://github.com/confluentinc/ksql/issues/4385."
                    .into(),
            ));
        }
        if kinds.len() > 2 {
            return Err(PlanError::Unsupported(
                "joining more than two windowed sources".into(),
            ));
        }
    }
    Ok(())
}

/// How a join step runs, from the kinds of its inputs, or why it cannot.
fn join_mode(
    join: &riffle_grammar::ast::Join,
    (lefts, left_kind): (&[JoinInput], SourceKind),
    right: &JoinInput,
) -> Result<StepMode, PlanError> {
    let left_name = &lefts[lefts.len() - 1].source.name;
    let right_name = &right.source.name;
    let written = match join.kind {
        JoinKind::Inner => "[INNER] JOIN",
        JoinKind::Left => "LEFT [OUTER] JOIN",
        JoinKind::Right => "RIGHT [OUTER] JOIN",
        JoinKind::Full => "[FULL] OUTER JOIN",
    };
    match (left_kind, right.source.kind) {
        (SourceKind::Stream, SourceKind::Stream) => {
            let Some(within) = join.within else {
                return Err(PlanError::Plan(
                    "Stream-Stream joins must have a WITHIN clause specified. None was \
                     provided. To learn about how to specify a WITHIN clause with a \
                     stream-stream join, please visit: https://docs.confluent.io/current/ksql/\
                     docs/syntax-reference.html#create-stream-as-select"
                        .into(),
                ));
            };
            let millis = |span: riffle_grammar::ast::TimeSpan| {
                i64::try_from(span.as_millis()).unwrap_or(i64::MAX / 4)
            };
            let before = millis(within.before);
            let after = within.after.map_or(before, millis);
            Ok(match within.grace {
                Some(grace) => StepMode::Windowed {
                    before,
                    after,
                    grace: millis(grace),
                    eager: false,
                },
                None => StepMode::Windowed {
                    before,
                    after,
                    grace: (LEGACY_RETENTION_MS - before - after).max(0),
                    eager: true,
                },
            })
        }
        _ if join.within.is_some() => Err(PlanError::Plan(format!(
            "A window definition was provided for a Stream-Table join. These joins are not \
             windowed. Please drop the window definition (ie. the WITHIN clause) and try to \
             execute your join again. Got {left_name} {written} {right_name}."
        ))),
        (SourceKind::Table, SourceKind::Stream) => Err(PlanError::Plan(format!(
            "Invalid join order: table-stream joins are not supported; only stream-table joins. \
             Got {left_name} {written} {right_name}."
        ))),
        (SourceKind::Stream, SourceKind::Table) => match join.kind {
            JoinKind::Inner | JoinKind::Left => Ok(StepMode::StreamTable),
            JoinKind::Full => Err(PlanError::Plan(format!(
                "Invalid join type: full-outer join not supported for stream-table join. Got \
                 {left_name} {written} {right_name}."
            ))),
            JoinKind::Right => Err(PlanError::Plan(format!(
                "Invalid join type: right-outer join not supported for stream-table join. Got \
                 {left_name} {written} {right_name}."
            ))),
        },
        (SourceKind::Table, SourceKind::Table) => Ok(StepMode::TableTable),
    }
}

/// A join's `ON left = right`, each side in joined names, with what the sides were.
struct JoinCondition {
    /// Over the sources joined so far.
    left: SqlExpr,
    /// Over the joined source.
    right: SqlExpr,
    left_text: String,
    right_text: String,
    /// The joined name and written form of a side that is a plain column.
    left_column: Option<(String, String)>,
    right_column: Option<(String, String)>,
}

impl JoinCondition {
    /// Splits `on` into its two sides; `named` are the sources so far, the joined one last.
    fn of(on: SqlExpr, named: &[Named]) -> Result<Self, PlanError> {
        let on = unnested(on);
        check_qualifiers(&on, named)?;
        let SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = on
        else {
            return Err(PlanError::Plan(format!(
                "Invalid join condition: joins on multiple conditions are not yet supported. \
                 Got {}.",
                parenthesized(&on)
            )));
        };
        let right_index = named.len() - 1;
        let whole = format!(
            "({} = {})",
            side_text(&left, named),
            side_text(&right, named)
        );
        let mut sides = Vec::with_capacity(2);
        for side in [*left, *right] {
            let side = unnested(side);
            let text = side_text(&side, named);
            let plain = plain_column(&side, named);
            let (resolved, used) =
                resolve(side, named, None, "JOIN ON").map_err(PlanError::while_preparing)?;
            if used.len() != 1 {
                return Err(PlanError::Plan(format!(
                    "Invalid comparison expression '{text}' in join '{whole}'. Each side of the \
                     join comparision must contain references from exactly one source."
                )));
            }
            let source = used.into_iter().next().unwrap_or_default();
            sides.push((resolved, text, plain, source));
        }
        let (mut first, mut second) = (sides.remove(0), sides.remove(0));
        if first.3 == right_index && second.3 != right_index {
            std::mem::swap(&mut first, &mut second);
        }
        if second.3 != right_index || first.3 == right_index {
            return Err(PlanError::Plan(format!(
                "Invalid join condition: each side of the join must reference a different \
                 source, one of them '{}'. Got {whole}.",
                named[right_index].alias
            )));
        }
        Ok(JoinCondition {
            left: first.0,
            right: second.0,
            left_text: first.1,
            right_text: second.1,
            left_column: first.2,
            right_column: second.2,
        })
    }

    /// The condition as ksqlDB shows it: plain columns qualified with their source.
    fn text(&self) -> String {
        format!("{} = {}", self.left_written(), self.right_written())
    }

    fn left_written(&self) -> &str {
        self.left_column.as_ref().map_or(&self.left_text, |c| &c.1)
    }

    fn right_written(&self) -> &str {
        self.right_column
            .as_ref()
            .map_or(&self.right_text, |c| &c.1)
    }
}

/// Fails on the first qualifier of `expr` that names no joined source.
fn check_qualifiers(expr: &SqlExpr, named: &[Named]) -> Result<(), PlanError> {
    let mut unknown = None;
    let _ = sqlparser::ast::visit_expressions(expr, |e| {
        if let SqlExpr::CompoundIdentifier(parts) = e
            && let Err(error) = find_qualifier(named, &parts[0].value)
        {
            unknown = Some(error);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    unknown.map_or(Ok(()), Err)
}

/// A join side as ksqlDB writes it in messages (`null` in lower case).
/// Columns are qualified with the one source that has them (`CAST(T.X AS STRING)`).
fn side_text(expr: &SqlExpr, named: &[Named]) -> String {
    let mut expr = unnested(expr.clone());
    if let SqlExpr::Value(v) = &expr
        && v.value == sqlparser::ast::Value::Null
    {
        return "null".into();
    }
    let _ = sqlparser::ast::visit_expressions_mut(&mut expr, |e| {
        if let SqlExpr::Identifier(ident) = e {
            let mut having = named.iter().filter(|n| n.columns.contains(&ident.value));
            if let (Some(source), None) = (having.next(), having.next()) {
                *e = SqlExpr::CompoundIdentifier(vec![Ident::new(&source.alias), ident.clone()]);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    expr.to_string()
}

fn unnested(expr: SqlExpr) -> SqlExpr {
    match expr {
        SqlExpr::Nested(inner) => unnested(*inner),
        other => other,
    }
}

/// ksqlDB's rendering of a condition: binary operations in parentheses.
fn parenthesized(expr: &SqlExpr) -> String {
    match expr {
        SqlExpr::BinaryOp { left, op, right } => {
            format!("({} {op} {})", parenthesized(left), parenthesized(right))
        }
        SqlExpr::Nested(inner) => parenthesized(inner),
        other => other.to_string(),
    }
}

/// The joined name and the written form (`L.A`) of an expression that is a plain column
/// of one of the sources.
fn plain_column(expr: &SqlExpr, named: &[Named]) -> Option<(String, String)> {
    let (source, column) = match expr {
        SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
            let source = named
                .iter()
                .find(|n| n.alias == parts[0].value || n.name == parts[0].value)?;
            (source, parts[1].value.clone())
        }
        SqlExpr::Identifier(ident) => {
            let mut having = named.iter().filter(|n| n.columns.contains(&ident.value));
            let source = having.next()?;
            if having.next().is_some() {
                return None;
            }
            (source, ident.value.clone())
        }
        _ => return None,
    };
    if !source.columns.contains(&column) {
        return None;
    }
    Some((
        joined_name(&source.alias, &column),
        format!("{}.{column}", source.alias),
    ))
}

/// Joins cannot be keyed by maps (their serialization is not stable).
fn check_key_type(condition: &JoinCondition, key_type: &DataType) -> Result<(), PlanError> {
    let Some(ty) = SqlType::from_arrow(key_type) else {
        return Ok(());
    };
    if !crate::catalog::contains_map(&ty) {
        return Ok(());
    }
    let name = condition
        .left_column
        .as_ref()
        .map_or_else(|| condition.left_text.clone(), |c| c.0.clone());
    Err(PlanError::Plan(crate::catalog::map_key_error(
        &crate::types::Column {
            name,
            ty,
            kind: crate::types::ColumnKind::Key,
        },
    )))
}

/// Whether a join side (its joined name, if a plain column) is its source's only key
/// column.
fn is_key_of(input: &JoinInput, column: &Option<(String, String)>) -> bool {
    let mut keys = input.source.schema.keys();
    match (keys.next(), keys.next(), column) {
        (Some(key), None, Some((name, _))) => *name == joined_name(&input.alias, &key.name),
        _ => false,
    }
}

/// A table side must be joined on its primary key; a table–table join whose left side is
/// not the left table's key is a foreign-key join.
fn check_table_keys(
    mode: StepMode,
    kind: JoinKind,
    condition: &JoinCondition,
    inputs: &[JoinInput],
) -> Result<StepMode, PlanError> {
    let right = &inputs[inputs.len() - 1];
    match mode {
        StepMode::Windowed { .. } | StepMode::ForeignKey => Ok(mode),
        StepMode::StreamTable if is_key_of(right, &condition.right_column) => Ok(mode),
        StepMode::StreamTable => Err(PlanError::Plan(format!(
            "Invalid join condition: stream-table joins require to join on the table's primary \
             key. Got {}.",
            condition.text()
        ))),
        StepMode::TableTable if !is_key_of(right, &condition.right_column) => {
            Err(PlanError::Plan(format!(
                "Invalid join condition: table-table joins require to join on the primary key of \
                 the right input table. Got {}.",
                condition.text()
            )))
        }
        StepMode::TableTable => {
            let left_is_key = inputs[..inputs.len() - 1]
                .iter()
                .any(|input| is_key_of(input, &condition.left_column));
            match kind {
                _ if left_is_key => Ok(mode),
                JoinKind::Inner | JoinKind::Left => Ok(StepMode::ForeignKey),
                JoinKind::Right => Err(PlanError::Plan(
                    "RIGHT OUTER JOIN on a foreign key is not supported".into(),
                )),
                JoinKind::Full => Err(PlanError::Plan(
                    "FULL OUTER JOIN on a foreign key is not supported".into(),
                )),
            }
        }
    }
}

/// A join of windowed sources keys its rows by key and window: each side must be joined
/// on its key column (moving rows of a window to another key is a repartition ksqlDB
/// refuses); answers the bound columns of both sides.
fn window_bounds(
    inputs: &[JoinInput],
    condition: &JoinCondition,
    mode: StepMode,
) -> Result<Option<[(String, String); 2]>, PlanError> {
    let (left, right) = (&inputs[0], &inputs[inputs.len() - 1]);
    if left.source.window.is_none() || right.source.window.is_none() {
        return Ok(None);
    }
    if mode == StepMode::ForeignKey {
        return Err(PlanError::Plan(
            "Foreign-key table-table joins are not supported on windowed tables.".into(),
        ));
    }
    if !is_key_of(left, &condition.left_column) || !is_key_of(right, &condition.right_column) {
        return Err(PlanError::Plan(
            "Implicit repartitioning of windowed sources is not supported. See \
             https://github.com/confluentinc/ksql/issues/4385."
                .into(),
        ));
    }
    let bounds = |input: &JoinInput| {
        let [start, end] = crate::plan::aggregate::WINDOW_BOUNDS;
        (
            joined_name(&input.alias, start),
            joined_name(&input.alias, end),
        )
    };
    Ok(Some([bounds(left), bounds(right)]))
}

/// The key of a windowed join: the join key with its window's bounds.
pub fn windowed_key_type(key: &DataType) -> DataType {
    DataType::Struct(
        vec![
            Field::new("KEY", key.clone(), true),
            Field::new("WINDOWSTART", DataType::Int64, true),
            Field::new("WINDOWEND", DataType::Int64, true),
        ]
        .into(),
    )
}

/// `ROWKEY`, or `ROWKEY_n` when a source has a column of that name.
/// The joined sources as name resolution sees them.
fn named_inputs(inputs: &[JoinInput]) -> Vec<Named> {
    inputs
        .iter()
        .map(|input| Named {
            alias: input.alias.clone(),
            name: input.source.name.clone(),
            columns: input
                .source
                .arrow_schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            star: input
                .source
                .schema
                .keys()
                .map(|c| c.name.clone())
                .chain(
                    input
                        .source
                        .window
                        .iter()
                        .flat_map(|_| crate::plan::aggregate::WINDOW_BOUNDS)
                        .map(str::to_string),
                )
                .chain(input.source.schema.non_keys().map(|c| c.name.clone()))
                .collect(),
            partitioned_star: input
                .source
                .schema
                .non_keys()
                .map(|c| c.name.clone())
                .chain(PSEUDO_COLUMNS.iter().map(|(name, _)| name.to_string()))
                .chain(input.source.schema.keys().map(|c| c.name.clone()))
                .collect(),
        })
        .collect()
}

fn synthetic_key_name(named: &[Named]) -> String {
    let taken = |candidate: &str| {
        named
            .iter()
            .any(|n| n.columns.iter().any(|c| c == candidate))
    };
    std::iter::once("ROWKEY".to_string())
        .chain((1..).map(|n| format!("ROWKEY_{n}")))
        .find(|candidate| !taken(candidate))
        .unwrap_or_else(|| "ROWKEY".into())
}

fn find_qualifier<'a>(named: &'a [Named], qualifier: &str) -> Result<&'a Named, PlanError> {
    named
        .iter()
        .find(|n| n.alias == qualifier)
        .or_else(|| named.iter().find(|n| n.name == qualifier))
        .ok_or_else(|| {
            PlanError::Plan(format!(
                "Failed to prepare statement: '{qualifier}' is not a valid stream/table name or \
                 alias."
            ))
        })
}

/// The name ksqlDB gives an unaliased selected column reference: `L.B` is `B` when only
/// one source has a `B`, else `L_B`; an unqualified `B` is `B`.
fn output_name(expr: &SqlExpr, named: &[Named]) -> Option<String> {
    match expr {
        SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
            let source = find_qualifier(named, &parts[0].value).ok()?;
            let column = &parts[1].value;
            let sharing = named.iter().filter(|n| n.columns.contains(column)).count();
            Some(if sharing > 1 {
                joined_name(&source.alias, column)
            } else {
                column.clone()
            })
        }
        SqlExpr::Identifier(ident) => Some(ident.value.clone()),
        _ => None,
    }
}

/// Rewrites the column references of `expr` to joined names; answers it with the sources
/// it refers to (by position).
fn resolve(
    mut expr: SqlExpr,
    named: &[Named],
    synthetic: Option<&str>,
    clause: &str,
) -> Result<(SqlExpr, BTreeSet<usize>), PlanError> {
    let mut resolver = Resolver {
        named,
        synthetic,
        clause,
        used: BTreeSet::new(),
        fields: Vec::new(),
        error: None,
    };
    let _ = expr.visit(&mut resolver);
    match resolver.error {
        Some(error) => Err(error),
        None => Ok((expr, resolver.used)),
    }
}

/// Marks a struct field name (`s->f`) while its expression is rewritten: it is no column.
const FIELD_MARK: char = '\u{1}';

struct Resolver<'a> {
    named: &'a [Named],
    synthetic: Option<&'a str>,
    clause: &'a str,
    used: BTreeSet<usize>,
    /// Quote styles of the struct field names being skipped, innermost last.
    fields: Vec<Option<char>>,
    error: Option<PlanError>,
}

impl Resolver<'_> {
    fn qualified(&mut self, qualifier_ident: &Ident, column: &str) -> Result<String, PlanError> {
        let qualifier = qualifier_ident.value.as_str();
        let source = find_qualifier(self.named, qualifier)?;
        if !source.columns.iter().any(|c| c == column) {
            return Err(PlanError::at(
                qualifier_ident,
                format!(
                    "{} column '{qualifier}.{column}' cannot be resolved.",
                    self.clause
                ),
            ));
        }
        if let Some(index) = self.named.iter().position(|n| std::ptr::eq(n, source)) {
            self.used.insert(index);
        }
        Ok(joined_name(&source.alias, column))
    }

    /// An unqualified name: the one source's column of that name; pseudo columns and the
    /// synthetic key are the joined rows' own.
    fn unqualified(&mut self, ident: &Ident) -> Result<Option<String>, PlanError> {
        let column = ident.value.as_str();
        if Some(column) == self.synthetic || PSEUDO_COLUMNS.iter().any(|(p, _)| *p == column) {
            return Ok(None);
        }
        let having: Vec<usize> = (0..self.named.len())
            .filter(|&i| self.named[i].columns.iter().any(|c| c == column))
            .collect();
        match having.as_slice() {
            [] => Ok(None),
            [one] => {
                self.used.insert(*one);
                Ok(Some(joined_name(&self.named[*one].alias, column)))
            }
            several => Err(PlanError::at(
                ident,
                format!(
                    "Column '{column}' is ambiguous. Could be {}.",
                    several
                        .iter()
                        .map(|&i| format!("{}.{column}", self.named[i].alias))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            )),
        }
    }
}

impl VisitorMut for Resolver<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        if let SqlExpr::BinaryOp {
            op: BinaryOperator::Arrow,
            right,
            ..
        } = expr
            && let SqlExpr::Identifier(field) = right.as_mut()
        {
            self.fields.push(field.quote_style);
            field.quote_style = Some(FIELD_MARK);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        let resolved = match expr {
            SqlExpr::BinaryOp {
                op: BinaryOperator::Arrow,
                right,
                ..
            } => {
                if let SqlExpr::Identifier(field) = right.as_mut()
                    && field.quote_style == Some(FIELD_MARK)
                {
                    field.quote_style = self.fields.pop().flatten();
                }
                return ControlFlow::Continue(());
            }
            SqlExpr::Identifier(ident) if ident.quote_style != Some(FIELD_MARK) => {
                self.unqualified(ident)
            }
            SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
                self.qualified(&parts[0], &parts[1].value).map(Some)
            }
            _ => return ControlFlow::Continue(()),
        };
        match resolved {
            Ok(Some(name)) => *expr = SqlExpr::Identifier(Ident::new(name)),
            Ok(None) => {}
            Err(error) => {
                self.error = Some(error);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}
