//! Planning `SELECT … FROM s [WINDOW …] [WHERE …] GROUP BY … [HAVING …]`: DataFusion plans
//! the relational core, and [`AggregatePlan`] keeps the pieces the streaming aggregation
//! runs — the `WHERE` filter and the group keys over input rows, the aggregate functions
//! (whose accumulators hold each group's state), and `HAVING` and the projection over the
//! aggregated row (group values, then aggregate values).
//!
//! A windowed query is planned over the source with two more columns, `WINDOWSTART` and
//! `WINDOWEND`, added to the `GROUP BY`: the runtime fills them with the bounds of the
//! window each record falls in, so window bounds are ordinary group values to DataFusion.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::{Expr as LogicalExpr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::sql::parser::Statement as DfStatement;
use riffle_grammar::ast::{Query, WindowSpec};
use sqlparser::ast::{Expr as SqlExpr, Ident};

use super::{PlanError, Planner, ProjectedColumn, check, is_scan, non_boolean_filter, simplified};

/// The window bound columns a windowed aggregation groups by.
pub const WINDOW_BOUNDS: [&str; 2] = ["WINDOWSTART", "WINDOWEND"];

/// How records are assigned to windows, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling { size: i64 },
    Hopping { size: i64, advance: i64 },
    Session { gap: i64 },
}

impl WindowKind {
    /// ksqlDB's name of the window type (`WINDOW_TYPE`).
    pub fn name(self) -> &'static str {
        match self {
            WindowKind::Tumbling { .. } => "TUMBLING",
            WindowKind::Hopping { .. } => "HOPPING",
            WindowKind::Session { .. } => "SESSION",
        }
    }
}

/// A `WINDOW` clause: the windows, and how late a record may be (`GRACE PERIOD`, 24 hours
/// when not given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windowing {
    pub kind: WindowKind,
    pub grace: i64,
    pub retention: Option<i64>,
}

const DEFAULT_GRACE_MS: i64 = 24 * 60 * 60 * 1000;
const DEFAULT_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

impl Windowing {
    pub fn from_ast(spec: &WindowSpec) -> Windowing {
        let millis = |span: &riffle_grammar::ast::TimeSpan| {
            i64::try_from(span.as_millis()).unwrap_or(i64::MAX)
        };
        let (kind, grace, retention) = match spec {
            WindowSpec::Tumbling {
                size,
                retention,
                grace,
            } => (
                WindowKind::Tumbling { size: millis(size) },
                grace,
                retention,
            ),
            WindowSpec::Hopping {
                size,
                advance,
                retention,
                grace,
            } => (
                WindowKind::Hopping {
                    size: millis(size),
                    advance: millis(advance),
                },
                grace,
                retention,
            ),
            WindowSpec::Session {
                gap,
                retention,
                grace,
            } => (WindowKind::Session { gap: millis(gap) }, grace, retention),
        };
        Windowing {
            kind,
            grace: grace.as_ref().map_or(DEFAULT_GRACE_MS, millis),
            retention: retention.as_ref().map(millis),
        }
    }

    /// How long a window stays in the table for pull queries, by stream time: `RETENTION`,
    /// or ksqlDB's default of one day (never less than size plus grace).
    pub fn table_retention(&self) -> i64 {
        let size = match self.kind {
            WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => size,
            WindowKind::Session { gap } => gap,
        };
        self.retention
            .unwrap_or(DEFAULT_RETENTION_MS)
            .max(size.saturating_add(self.grace))
    }
}

/// A grouped aggregation, ready to run on batches of one source.
#[derive(Debug, Clone)]
pub struct AggregatePlan {
    /// `WHERE`, over input rows.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// The `GROUP BY` expressions, over input rows (window bounds are not among them).
    pub group_by: Vec<Arc<dyn PhysicalExpr>>,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// The rows the aggregation reads (the source's, with `ROWTIME` and window bounds).
    pub input_schema: SchemaRef,
    /// The aggregated row: the group values (then the window bounds), then the aggregates.
    pub aggregated_schema: SchemaRef,
    /// `HAVING`, over the aggregated row.
    pub having: Option<Arc<dyn PhysicalExpr>>,
    /// The output columns, over the aggregated row; a column that copies a group value names
    /// it in `source_column` (that is how the key columns are found).
    pub projection: Vec<ProjectedColumn>,
    pub output_schema: SchemaRef,
    pub windowing: Option<Windowing>,
    /// The source is a table: rows are upserts, and an earlier row of a key is taken back
    /// out of its group (accumulators that can retract).
    pub over_table: bool,
    /// `EMIT FINAL`: a window's row is emitted once, when the window closes.
    pub emit_final: bool,
    pub emission: Emission,
}

/// How an aggregation emits the changes rows make to groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emission {
    /// Every input row that changes a group emits the group's new row: ksqlDB with its
    /// record cache off (`cache.max.bytes.buffering` 0), as its tests run.
    PerRecord,
    /// ksqlDB's record cache: changed groups are held, and each emits its latest row once
    /// when the cache is flushed: every `commit_interval`, when the held groups reach about
    /// `cache_bytes`, and whenever the query has read all there is to read.
    Coalesced {
        cache_bytes: usize,
        commit_interval: std::time::Duration,
    },
}

impl Emission {
    /// ksqlDB's default record cache: 10 MB.
    pub const DEFAULT_CACHE_BYTES: usize = 10_000_000;
    /// ksqlDB's default commit interval: 2 seconds.
    pub const DEFAULT_COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

    /// Whether changed groups are held until a flush.
    pub fn coalesces(self) -> bool {
        self != Emission::PerRecord
    }
}

impl AggregatePlan {
    /// How many group values the aggregated row starts with (window bounds included).
    pub fn group_width(&self) -> usize {
        self.aggregated_schema.fields().len() - self.aggregates.len()
    }

    /// The expressions over input rows: the filter, the groups and the aggregates'
    /// arguments and orderings.
    pub fn input_expressions(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        let mut expressions: Vec<Arc<dyn PhysicalExpr>> =
            self.filter.iter().chain(&self.group_by).cloned().collect();
        for aggregate in &self.aggregates {
            expressions.extend(aggregate.expressions());
            expressions.extend(aggregate.order_bys().iter().map(|o| o.expr.clone()));
        }
        expressions
    }

    /// The names of the group values in the aggregated row.
    pub fn group_names(&self) -> Vec<String> {
        self.aggregated_schema.fields()[..self.group_width()]
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }
}

/// The schema a windowed aggregation is planned over: the source's, with the window bounds.
pub fn with_window_bounds(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .chain(WINDOW_BOUNDS.map(|name| Field::new(name, DataType::Int64, true)))
        .collect();
    Arc::new(Schema::new(fields))
}

/// The name a windowed source is registered under for planning.
pub fn windowed_name(source: &str) -> String {
    format!("{source}__WINDOWED")
}

/// The parts of a planned aggregation: `Projection(Filter?(Aggregate(Filter?(scan))))`.
struct AggregateParts<'a> {
    projection: &'a datafusion::logical_expr::Projection,
    having: Option<&'a LogicalExpr>,
    aggregate: &'a datafusion::logical_expr::Aggregate,
    filter: Option<&'a LogicalExpr>,
    /// The scan the aggregation reads.
    input: &'a LogicalPlan,
}

impl<'a> AggregateParts<'a> {
    /// The parts of `plan`, or an error when it has another shape.
    fn of(plan: &'a LogicalPlan) -> Result<Self, PlanError> {
        let LogicalPlan::Projection(projection) = plan else {
            return Err(PlanError::Plan(format!(
                "internal: expected a projection, got {}",
                plan.display()
            )));
        };
        let unsupported = || PlanError::Unsupported("this aggregation".into());
        let (having, aggregate) = match projection.input.as_ref() {
            LogicalPlan::Filter(filter) => match filter.input.as_ref() {
                LogicalPlan::Aggregate(aggregate) => (Some(&filter.predicate), aggregate),
                _ => return Err(unsupported()),
            },
            LogicalPlan::Aggregate(aggregate) => (None, aggregate),
            _ => return Err(unsupported()),
        };
        let (filter, input) = match aggregate.input.as_ref() {
            LogicalPlan::Filter(filter) if is_scan(&filter.input) => {
                (Some(&filter.predicate), filter.input.as_ref())
            }
            input if is_scan(input) => (None, input),
            _ => return Err(unsupported()),
        };
        Ok(Self {
            projection,
            having,
            aggregate,
            filter,
            input,
        })
    }

    /// Checks the comparisons (`WHERE`, `HAVING`, projection) by ksqlDB's type rules.
    fn check_types(&self) -> Result<(), PlanError> {
        let input = self.input.schema();
        if let Some(predicate) = self.filter {
            check::check_comparisons(predicate, input, check::Clause::Where)?;
        }
        // Checked over the aggregation's input, with its results written as the calls
        // that make them: an error then reads `SUM(VALUE)`, as the user wrote it.
        let unaliased = |expr: &LogicalExpr| {
            use datafusion::common::tree_node::{Transformed, TreeNode};
            expr.clone()
                .transform(|node| {
                    let call = match &node {
                        LogicalExpr::Column(column) => self
                            .aggregate
                            .aggr_expr
                            .iter()
                            .find(|a| a.schema_name().to_string() == column.name),
                        _ => None,
                    };
                    Ok(match call {
                        Some(call) => Transformed::yes(call.clone()),
                        None => Transformed::no(node),
                    })
                })
                .map(|t| t.data)
        };
        if let Some(predicate) = self.having {
            check::check_comparisons(&unaliased(predicate)?, input, check::Clause::Having)?;
        }
        for expr in &self.projection.expr {
            check::check_comparisons(&unaliased(expr)?, input, check::Clause::Select)?;
        }
        Ok(())
    }
}

impl Planner {
    /// Plans a grouped aggregation. `star_columns` are the columns `*` stands for.
    pub async fn plan_aggregate(
        &self,
        query: &Query,
        star_columns: &[String],
    ) -> Result<AggregatePlan, PlanError> {
        if !query.from.joins.is_empty() {
            return Err(PlanError::Unsupported("JOIN".into()));
        }
        let mut query = self.prepare_projection(query, star_columns).await?;
        let windowing = query.window.as_ref().map(Windowing::from_ast);
        if windowing.is_some() {
            // Plan over the source with window bounds, under the source's own name (or
            // alias), with the bounds grouped on.
            let source = &mut query.from.source;
            if source.alias.is_none() {
                source.alias = Some(source.name.clone());
            }
            source.name = Ident::new(windowed_name(&source.name.value));
            query.group_by.extend(
                WINDOW_BOUNDS.map(|name| SqlExpr::Identifier(Ident::new(name.to_string()))),
            );
        }
        let statement = self.to_datafusion(&query)?;
        let state = self.context.state();
        let plan = state
            .statement_to_plan(DfStatement::Statement(Box::new(statement)))
            .await
            .map_err(|error| non_boolean_filter(error, &query))?;
        // ksqlDB's comparison rules apply to the types as written, before the analyzer
        // coerces them (it casts the '100' of `SUM(V) > '100'` to a number).
        AggregateParts::of(&plan)?.check_types()?;
        // Type coercion (SUM of an INT reads it as a BIGINT) happens in the analyzer.
        let plan = state
            .analyzer()
            .execute_and_check(plan, state.config_options(), |_, _| {})?;
        let AggregateParts {
            projection,
            having,
            aggregate,
            filter,
            input,
        } = AggregateParts::of(&plan)?;
        let (having, filter) = (having.cloned(), filter.cloned());
        let input_schema = input.schema();
        let arrow_input = input_schema.as_arrow();
        let aggregated = aggregate.schema.as_ref();
        let filter = filter
            .map(|predicate| {
                state.create_physical_expr(simplified(predicate, input_schema), input_schema)
            })
            .transpose()?;
        let window_columns = if windowing.is_some() {
            WINDOW_BOUNDS.len()
        } else {
            0
        };
        if aggregate.group_expr_len()? != aggregate.group_expr.len()
            || aggregate.group_expr.len() < window_columns
        {
            return Err(PlanError::Unsupported("GROUPING SETS".into()));
        }
        let user_groups = aggregate.group_expr.len() - window_columns;
        let group_by = aggregate.group_expr[..user_groups]
            .iter()
            .map(|expr| {
                state.create_physical_expr(simplified(expr.clone(), input_schema), input_schema)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut aggregates = Vec::with_capacity(aggregate.aggr_expr.len());
        for expr in &aggregate.aggr_expr {
            #[allow(deprecated)]
            let (function, _, _) =
                datafusion::physical_planner::create_aggregate_expr_and_maybe_filter(
                    &simplified(expr.clone(), input_schema),
                    input_schema,
                    arrow_input,
                    state.execution_props(),
                )?;
            aggregates.push(function);
        }
        let having = having
            .map(|predicate| {
                state.create_physical_expr(simplified(predicate, aggregated), aggregated)
            })
            .transpose()?;
        let group_names: Vec<String> = aggregated.fields()[..aggregate.group_expr.len()]
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut columns = Vec::with_capacity(projection.expr.len());
        let mut fields = Vec::with_capacity(projection.expr.len());
        for (expr, field) in projection.expr.iter().zip(plan.schema().fields()) {
            let physical =
                state.create_physical_expr(simplified(expr.clone(), aggregated), aggregated)?;
            // Every ksqlDB column may be NULL (one a function failed on is).
            fields.push(field.as_ref().clone().with_nullable(true));
            let source_column = match expr.clone().unalias() {
                datafusion::logical_expr::Expr::Column(column)
                    if group_names.contains(&column.name) =>
                {
                    Some(column.name)
                }
                _ => None,
            };
            columns.push(ProjectedColumn {
                name: field.name().clone(),
                expr: physical,
                source_column,
                value_scale: None,
            });
        }
        Ok(AggregatePlan {
            filter,
            group_by,
            aggregates,
            input_schema: Arc::new(arrow_input.clone()),
            aggregated_schema: Arc::new(aggregated.as_arrow().clone()),
            having,
            projection: columns,
            output_schema: Arc::new(Schema::new(fields)),
            windowing,
            over_table: false,
            emit_final: false,
            emission: Emission::PerRecord,
        })
    }
}
