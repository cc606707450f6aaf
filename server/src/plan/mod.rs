//! Statement → DataFusion `LogicalPlan` → the expressions a streaming operator evaluates.
//!
//! DataFusion plans the relational core (projection, filter, expressions with type
//! coercion); our runtime evaluates the resulting `PhysicalExpr`s on each Arrow batch it
//! decodes. Entry point: [`Planner::plan_stateless`].

pub mod aggregate;
mod check;
pub mod explode;
pub mod grouping;
pub mod join;
pub mod key_conditions;
mod operators;
mod rewrite;

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::catalog::empty::EmptyTable;
use datafusion::common::{DFSchema, DataFusionError};
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr as LogicalExpr, LogicalPlan};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionConfig;

use datafusion::sql::parser::Statement as DfStatement;
pub use explode::Explode;
use riffle_grammar::ast::Query;
use sqlparser::ast::{
    Expr as SqlExpr, Ident, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    Statement as SqlStatement, TableFactor,
};
use sqlparser::dialect::GenericDialect;

/// A planning error: the user's query is wrong, or the feature is not built yet.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Plan(String),
    /// A planning error about one name of the query, which `position` points at; `prefix`
    /// is what ksqlDB says before the position for some errors.
    #[error("{prefix}Line: {}, Col: {}: {message}", position.line, position.column)]
    Located {
        position: riffle_grammar::Position,
        message: String,
        prefix: &'static str,
    },
    #[error("{0} is not supported yet")]
    Unsupported(String),
}

impl PlanError {
    /// An error about `ident`, located at it when the parser recorded where it is.
    pub fn at(ident: &Ident, message: String) -> Self {
        // A name the planner made up has no span (line 0).
        let start = ident.span.start;
        if start.line == 0 {
            return PlanError::Plan(message);
        }
        PlanError::Located {
            position: riffle_grammar::Position::new(start.line, start.column),
            message,
            prefix: "",
        }
    }

    /// The error as ksqlDB reports one found while it prepares the statement (a join
    /// condition's names): `Exception while preparing statement: Line: …`.
    pub fn while_preparing(self) -> Self {
        match self {
            PlanError::Located {
                position, message, ..
            } => PlanError::Located {
                position,
                message,
                prefix: "Exception while preparing statement: ",
            },
            other => other,
        }
    }

    /// The error as ksqlDB reports a problem of the WHERE clause.
    pub fn in_where(self) -> Self {
        match self {
            PlanError::Plan(message) => {
                PlanError::Plan(format!("Error in WHERE expression: {message}"))
            }
            other => other,
        }
    }
}

impl From<arrow::error::ArrowError> for PlanError {
    fn from(error: arrow::error::ArrowError) -> Self {
        PlanError::Plan(error.to_string())
    }
}

impl From<DataFusionError> for PlanError {
    fn from(error: DataFusionError) -> Self {
        let message = error.strip_backtrace();
        PlanError::Plan(crate::functions::udf::refusal_in_ksql_words(&message).unwrap_or(message))
    }
}

/// Plans queries against sources whose Arrow schemas it is given.
#[derive(Clone)]
pub struct Planner {
    context: SessionContext,
    /// The table functions' names, lower case: their calls make rows (`plan::explode`).
    table_functions: Arc<parking_lot::RwLock<std::collections::HashSet<String>>>,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner").finish_non_exhaustive()
    }
}

type ReturnTypeOf =
    Box<dyn Fn(&[arrow::datatypes::DataType]) -> Option<arrow::datatypes::DataType>>;

/// What `DESCRIBE FUNCTION` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDescription {
    pub name: String,
    /// `SCALAR`, `AGGREGATE` or `TABLE`.
    pub kind: &'static str,
    pub description: String,
    pub variants: Vec<FunctionVariant>,
}

/// One argument list a function takes, with ksqlDB type names where they are fixed.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionVariant {
    /// The arguments' types.
    pub arguments: Vec<String>,
    /// The arguments' names where documented (else empty).
    pub argument_names: Vec<String>,
    pub return_type: String,
    pub variadic: bool,
}

/// A projection with an optional filter, ready to run on batches of one source.
#[derive(Debug, Clone)]
pub struct StatelessPlan {
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Table functions (`EXPLODE`): the rows each input row becomes, which the projection
    /// then reads.
    pub explode: Option<Explode>,
    pub projection: Vec<ProjectedColumn>,
    pub output_schema: SchemaRef,
}

impl StatelessPlan {
    /// The expressions over input rows: the filter and the projection (or, with table
    /// functions, what is computed before exploding).
    pub fn input_expressions(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        let over_inputs: Vec<&Arc<dyn PhysicalExpr>> = match &self.explode {
            Some(explode) => explode.inputs.iter().collect(),
            None => self.projection.iter().map(|c| &c.expr).collect(),
        };
        self.filter.iter().chain(over_inputs).cloned().collect()
    }
}

/// One output column: its name, how it is computed, and the input column it copies when it
/// is a plain column reference (which is how key columns carry through a query).
#[derive(Debug, Clone)]
pub struct ProjectedColumn {
    pub name: String,
    pub expr: Arc<dyn PhysicalExpr>,
    pub source_column: Option<String>,
    /// For a DECIMAL column whose values keep the scale of the argument they come from
    /// (`GREATEST` and `LEAST` over DECIMALs of different scales, as ksqlDB's `BigDecimal`s
    /// do): each row's own scale, which the writers write the value with. The output
    /// carries it in the column [`value_scale_column`] names.
    pub value_scale: Option<Arc<dyn PhysicalExpr>>,
}

/// The column of a plan's output holding a DECIMAL column's per-row scales. It comes after
/// the output schema's columns, so what reads the output by that schema never sees it.
pub fn value_scale_column(name: &str) -> String {
    format!("{name}{VALUE_SCALE_SUFFIX}")
}

/// What ends the name of a [`value_scale_column`] (no ksqlDB identifier holds a NUL).
pub const VALUE_SCALE_SUFFIX: &str = "\u{0}scale";

/// Each row's own scale of an output expression whose DECIMAL values keep the scales of
/// the arguments they are taken from: `GREATEST` and `LEAST` over DECIMALs of more than one
/// scale. (Everything else ksqlDB computes on DECIMALs — arithmetic, casts, reading a
/// value — sets the type's scale.)
fn value_scale(expr: &LogicalExpr, schema: &DFSchema) -> Option<LogicalExpr> {
    use arrow::datatypes::DataType;
    use datafusion::logical_expr::ExprSchemable;
    use datafusion::logical_expr::expr::ScalarFunction;
    let LogicalExpr::ScalarFunction(call) = expr.clone().unalias() else {
        return None;
    };
    let greatest = match call.func.name() {
        "greatest" => true,
        "least" => false,
        _ => return None,
    };
    let mut scales = Vec::with_capacity(call.args.len());
    for arg in &call.args {
        match arg.get_type(schema).ok()? {
            DataType::Decimal128(_, scale) | DataType::Decimal256(_, scale) => scales.push(scale),
            DataType::Null => {}
            _ => return None,
        }
    }
    if scales.windows(2).all(|pair| pair[0] == pair[1]) {
        return None;
    }
    let udf = Arc::new(crate::functions::extreme_value_scale(greatest));
    Some(LogicalExpr::ScalarFunction(ScalarFunction::new_udf(
        udf, call.args,
    )))
}

impl Default for Planner {
    fn default() -> Self {
        Self::new()
    }
}

impl Planner {
    pub fn new() -> Self {
        let mut config = SessionConfig::new();
        let options = config.options_mut();
        // ksqlDB upper-cases unquoted identifiers itself; `1.5` is a DECIMAL literal.
        options.sql_parser.enable_ident_normalization = false;
        options.sql_parser.parse_float_as_decimal = true;
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        let planners = builder.expr_planners().take().unwrap_or_default();
        let state = builder
            .with_expr_planners(operators::with_ksql_planners(planners))
            .build();
        let context = SessionContext::new_with_state(state);
        crate::functions::register(&context);
        let table_functions = crate::functions::table::NAMES
            .iter()
            .map(|name| name.to_string())
            .collect();
        Self {
            context,
            table_functions: Arc::new(parking_lot::RwLock::new(table_functions)),
        }
    }

    /// Makes a table function callable: `udf` answers the array of rows each call makes
    /// (the conformance runner's test functions).
    pub fn register_table_function(&self, udf: datafusion::logical_expr::ScalarUDF) {
        self.table_functions
            .write()
            .insert(udf.name().to_lowercase());
        self.context.register_udf(udf);
    }

    /// Whether a SELECT calls a table function.
    pub fn calls_table_function(&self, projection: &[SelectItem]) -> bool {
        let names = self.table_functions.read();
        projection.iter().any(|item| {
            sqlparser::ast::visit_expressions(item, |expr| match expr {
                SqlExpr::Function(function)
                    if names.contains(&function.name.to_string().to_lowercase()) =>
                {
                    std::ops::ControlFlow::Break(())
                }
                _ => std::ops::ControlFlow::Continue(()),
            })
            .is_break()
        })
    }

    /// Makes a source known to the planner under its (already normalised) name, replacing
    /// an earlier one of that name.
    /// A windowed aggregation is planned over a twin of the source with window bounds.
    pub fn register_source(&self, name: &str, schema: SchemaRef) -> Result<(), PlanError> {
        self.deregister_source(name)?;
        let windowed = aggregate::with_window_bounds(&schema);
        for (table, schema) in [
            (name.to_string(), schema),
            (aggregate::windowed_name(name), windowed),
        ] {
            self.context.register_table(
                datafusion::common::TableReference::bare(table),
                Arc::new(EmptyTable::new(schema)),
            )?;
        }
        Ok(())
    }

    /// Forgets a dropped source.
    pub fn deregister_source(&self, name: &str) -> Result<(), PlanError> {
        for table in [name.to_string(), aggregate::windowed_name(name)] {
            self.context
                .deregister_table(datafusion::common::TableReference::bare(table))?;
        }
        Ok(())
    }

    /// Plans `SELECT … FROM source [WHERE …]` without joins, windows or aggregation.
    /// `star_columns` are the columns `*` stands for (ksqlDB's `*` leaves out the pseudo
    /// columns such as `ROWTIME`).
    pub async fn plan_stateless(
        &self,
        query: &Query,
        star_columns: &[String],
    ) -> Result<StatelessPlan, PlanError> {
        if !query.from.joins.is_empty() {
            return Err(PlanError::Unsupported("JOIN".into()));
        }
        if query.window.is_some() || !query.group_by.is_empty() {
            return Err(PlanError::Unsupported("aggregation".into()));
        }
        let query = self.prepare_projection(query, star_columns).await?;
        let statement = self.to_datafusion(&query)?;
        let state = self.context.state();
        let plan = match state
            .statement_to_plan(DfStatement::Statement(Box::new(statement)))
            .await
        {
            Ok(plan) => plan,
            Err(error) => return Err(self.explain_planning_error(error, &query).await),
        };
        let Split {
            exprs,
            filter,
            input_schema,
            explode,
        } = split_projection(&plan)?;
        // What the SELECT's expressions read: the source's rows, or the exploded ones.
        let projected_schema = explode
            .as_ref()
            .map_or(input_schema, |(unnest, _)| unnest.schema.as_ref());
        if let Some(predicate) = &filter {
            check::check_arithmetic(predicate, input_schema).map_err(PlanError::in_where)?;
        }
        for expr in &exprs {
            check::check_arithmetic(expr, projected_schema)?;
        }
        if let Some(predicate) = &filter {
            check::check_comparisons(predicate, input_schema, check::Clause::Where)?;
        }
        for expr in &exprs {
            check::check_comparisons(expr, projected_schema, check::Clause::Select)?;
        }
        let simplify = |expr: LogicalExpr| Ok::<_, PlanError>(simplified(expr, input_schema));
        let filter = filter
            .map(simplify)
            .transpose()?
            .map(|predicate| state.create_physical_expr(predicate, input_schema))
            .transpose()?;
        let explode = match explode {
            Some((unnest, inputs)) => {
                let inputs = inputs
                    .into_iter()
                    .map(|expr| {
                        check::check_arithmetic(&expr, input_schema)?;
                        Ok(state.create_physical_expr(simplify(expr)?, input_schema)?)
                    })
                    .collect::<Result<Vec<_>, PlanError>>()?;
                Some(Explode::new(inputs, unnest)?)
            }
            None => None,
        };
        let mut projection = Vec::with_capacity(exprs.len());
        let mut fields = Vec::with_capacity(exprs.len());
        for (expr, field) in exprs.iter().zip(plan.schema().fields()) {
            let expr = simplified(expr.clone(), projected_schema);
            let physical = state.create_physical_expr(expr.clone(), projected_schema)?;
            fields.push(field.as_ref().clone());
            let source_column = match expr.clone().unalias() {
                LogicalExpr::Column(column) => Some(column.name),
                _ => None,
            };
            let value_scale = value_scale(&expr, projected_schema)
                .map(|scale| state.create_physical_expr(scale, projected_schema))
                .transpose()?;
            projection.push(ProjectedColumn {
                name: field.name().clone(),
                expr: physical,
                source_column,
                value_scale,
            });
        }
        Ok(StatelessPlan {
            filter,
            explode,
            projection,
            output_schema: Arc::new(Schema::new(fields)),
        })
    }

    /// The projection as it will be planned: qualifiers of `x.*` checked, `*` and `s->*`
    /// expanded, every derived column named as ksqlDB names it.
    async fn prepare_projection(
        &self,
        query: &Query,
        star_columns: &[String],
    ) -> Result<Query, PlanError> {
        for item in &query.projection {
            if let SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(qualifier),
                _,
            ) = item
            {
                let name = qualifier.to_string();
                let source = &query.from.source;
                let known = name == source.name.value
                    || source.alias.as_ref().is_some_and(|a| a.value == name);
                if !known {
                    return Err(PlanError::Plan(format!(
                        "'{name}' is not a valid stream/table name or alias."
                    )));
                }
            }
        }
        let mut query = query.clone();
        query.projection = self.expand_struct_stars(&query).await?;
        query.projection =
            name_columns(expand_stars(&query.projection, star_columns), star_columns);
        Ok(query)
    }

    /// A pull query over a table's current rows (`snapshot`): DataFusion runs the whole
    /// query (`WHERE`, projection, `LIMIT`) over them. `star_columns` are what `*` means.
    pub async fn pull(
        &self,
        query: &Query,
        snapshot: RecordBatch,
        star_columns: &[String],
    ) -> Result<(SchemaRef, Vec<RecordBatch>), PlanError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let table = format!(
            "__PULL_{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let schema = snapshot.schema();
        let rows = datafusion::datasource::MemTable::try_new(schema, vec![vec![snapshot]])?;
        self.context.register_table(
            datafusion::common::TableReference::bare(table.clone()),
            Arc::new(rows),
        )?;
        let result = async {
            let mut query = self.prepare_projection(query, star_columns).await?;
            let source = &mut query.from.source;
            if source.alias.is_none() {
                source.alias = Some(source.name.clone());
            }
            source.name = Ident::new(table.clone());
            let mut statement = self.to_datafusion(&query)?;
            if let (Some(limit), SqlStatement::Query(sql)) = (query.limit, &mut statement) {
                sql.limit_clause = Some(sqlparser::ast::LimitClause::LimitOffset {
                    limit: Some(SqlExpr::value(sqlparser::ast::Value::Number(
                        limit.to_string(),
                        false,
                    ))),
                    offset: None,
                    limit_by: Vec::new(),
                });
            }
            let plan = self
                .context
                .state()
                .statement_to_plan(DfStatement::Statement(Box::new(statement)))
                .await?;
            let frame = self.context.execute_logical_plan(plan).await?;
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame.collect().await?;
            Ok::<_, PlanError>((schema, batches))
        }
        .await;
        let _ = self
            .context
            .deregister_table(datafusion::common::TableReference::bare(table));
        result
    }

    /// Replaces `s->*` with `s->f` for every field `f` of the struct `s`.
    async fn expand_struct_stars(&self, query: &Query) -> Result<Vec<SelectItem>, PlanError> {
        let mut expanded = Vec::with_capacity(query.projection.len());
        for item in &query.projection {
            let SelectItem::UnnamedExpr(SqlExpr::BinaryOp {
                left,
                op: sqlparser::ast::BinaryOperator::Arrow,
                right,
            }) = item
            else {
                expanded.push(item.clone());
                continue;
            };
            if !matches!(right.as_ref(), SqlExpr::Wildcard(_)) {
                expanded.push(item.clone());
                continue;
            }
            let probe = Query {
                projection: vec![SelectItem::ExprWithAlias {
                    expr: left.as_ref().clone(),
                    alias: Ident::new("STRUCT_ALL"),
                }],
                selection: None,
                ..query.clone()
            };
            let statement = self.to_datafusion(&probe)?;
            let plan = self
                .context
                .state()
                .statement_to_plan(DfStatement::Statement(Box::new(statement)))
                .await?;
            let arrow::datatypes::DataType::Struct(fields) = plan.schema().field(0).data_type()
            else {
                return Err(PlanError::Plan(format!(
                    "'{left}' is not a STRUCT: only a STRUCT's fields can be selected with '->*'"
                )));
            };
            expanded.extend(fields.iter().map(|field| {
                SelectItem::UnnamedExpr(SqlExpr::BinaryOp {
                    left: left.clone(),
                    op: sqlparser::ast::BinaryOperator::Arrow,
                    right: Box::new(SqlExpr::Identifier(Ident::with_quote('`', field.name()))),
                })
            }));
        }
        Ok(expanded)
    }

    /// Whether `name` is an aggregate function (`COUNT`, `SUM`…).
    pub fn is_aggregate_function(&self, name: &str) -> bool {
        self.context
            .state()
            .aggregate_functions()
            .contains_key(&name.to_lowercase())
    }

    /// Makes an aggregate function callable by queries (the conformance runner's test
    /// functions; the shipped server registers its own at start).
    pub fn register_aggregate(&self, udaf: datafusion::logical_expr::AggregateUDF) {
        self.context.register_udaf(udaf);
    }

    /// Makes a scalar function callable by queries (the conformance runner's test functions).
    pub fn register_scalar(&self, udf: datafusion::logical_expr::ScalarUDF) {
        self.context.register_udf(udf);
    }

    /// Whether queries can call a function of this name (any case).
    pub fn has_function(&self, name: &str) -> bool {
        let state = self.context.state();
        let lower = name.to_lowercase();
        state.scalar_functions().contains_key(&lower)
            || state.aggregate_functions().contains_key(&lower)
            || state.window_functions().contains_key(&lower)
            || state.higher_order_functions().contains_key(&lower)
    }

    /// The names of every function queries can call, upper case.
    pub fn function_names(&self) -> Vec<String> {
        let state = self.context.state();
        let mut names: Vec<String> = state
            .scalar_functions()
            .keys()
            .chain(state.aggregate_functions().keys())
            .chain(state.higher_order_functions().keys())
            .filter(|name| !crate::functions::PLANNER_ONLY.contains(&name.as_str()))
            .map(|name| name.to_uppercase())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// `DESCRIBE FUNCTION`: the function's kind, description and the argument lists it
    /// takes, as far as its signature spells them out.
    pub fn describe_function(&self, name: &str) -> Option<FunctionDescription> {
        use datafusion::logical_expr::TypeSignature;
        if let Some(documented) = crate::functions::catalogue::documented(name) {
            return Some(self.documented_function(documented));
        }
        let state = self.context.state();
        let lower = name.to_lowercase();
        let (kind, signature, documentation, return_type): (_, _, _, ReturnTypeOf) =
            if let Some(udf) = state.scalar_functions().get(&lower) {
                let udf = udf.clone();
                (
                    "SCALAR",
                    udf.signature().type_signature.clone(),
                    udf.documentation().cloned(),
                    Box::new(move |args| udf.return_type(args).ok()),
                )
            } else {
                let udaf = state.aggregate_functions().get(&lower)?.clone();
                (
                    "AGGREGATE",
                    udaf.signature().type_signature.clone(),
                    udaf.documentation().cloned(),
                    Box::new(move |args| udaf.return_type(args).ok()),
                )
            };
        let type_name = |t: &arrow::datatypes::DataType| {
            crate::types::SqlType::from_arrow(t).map_or_else(|| t.to_string(), |t| t.to_string())
        };
        let exact = |types: &[arrow::datatypes::DataType]| FunctionVariant {
            arguments: types.iter().map(type_name).collect(),
            argument_names: Vec::new(),
            return_type: return_type(types).map_or_else(|| "ANY".into(), |t| type_name(&t)),
            variadic: false,
        };
        let variants = match &signature {
            TypeSignature::Exact(types) => vec![exact(types)],
            TypeSignature::OneOf(signatures) => signatures
                .iter()
                .filter_map(|s| match s {
                    TypeSignature::Exact(types) => Some(exact(types)),
                    _ => None,
                })
                .collect(),
            TypeSignature::Nullary => vec![exact(&[])],
            _ => Vec::new(),
        };
        let variants = if variants.is_empty() {
            // A signature DataFusion resolves at planning time: name the arguments only.
            let arguments = documentation
                .as_ref()
                .and_then(|d| d.arguments.as_ref())
                .map(|args| args.iter().map(|(name, _)| name.clone()).collect())
                .unwrap_or_else(|| vec!["ANY".to_string()]);
            vec![FunctionVariant {
                arguments,
                argument_names: Vec::new(),
                return_type: "ANY".into(),
                variadic: matches!(
                    signature,
                    TypeSignature::VariadicAny | TypeSignature::Variadic(_)
                ),
            }]
        } else {
            variants
        };
        Some(FunctionDescription {
            name: name.to_uppercase(),
            kind,
            description: documentation.map(|d| d.description).unwrap_or_default(),
            variants,
        })
    }

    /// `DESCRIBE FUNCTION` of one of ksqlDB's functions, from its documentation.
    fn documented_function(
        &self,
        documented: &crate::functions::catalogue::Documented,
    ) -> FunctionDescription {
        let lower = documented.name.to_lowercase();
        let kind = if crate::functions::catalogue::is_aggregate(documented) {
            "AGGREGATE"
        } else if self.table_functions.read().contains(&lower) {
            "TABLE"
        } else {
            "SCALAR"
        };
        let variants = documented
            .signatures
            .iter()
            .map(|(arguments, return_type)| {
                let (mut names, mut types) = (Vec::new(), Vec::new());
                let mut variadic = false;
                for argument in arguments.split(", ").filter(|a| !a.is_empty()) {
                    let (name, ty) = argument.split_once(' ').unwrap_or(("", argument));
                    variadic |= ty.ends_with("...");
                    names.push(name.to_string());
                    types.push(ty.trim_end_matches("...").to_string());
                }
                FunctionVariant {
                    arguments: types,
                    argument_names: names,
                    return_type: return_type.to_string(),
                    variadic,
                }
            })
            .collect();
        FunctionDescription {
            name: documented.name.to_string(),
            kind,
            description: documented.description.to_string(),
            variants,
        }
    }

    /// Evaluates expressions that read no columns (`INSERT INTO … VALUES`), one value each.
    pub async fn evaluate_constants(
        &self,
        exprs: &[sqlparser::ast::Expr],
    ) -> Result<Vec<arrow::array::ArrayRef>, PlanError> {
        const ONE_ROW: &str = "__RIFFLE_ONE_ROW";
        if !self
            .context
            .table_exist(datafusion::common::TableReference::bare(ONE_ROW))?
        {
            self.register_source(ONE_ROW, Arc::new(Schema::empty()))?;
        }
        let projection = exprs
            .iter()
            .enumerate()
            .map(|(i, expr)| SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: Ident::new(format!("V{i}")),
            })
            .collect();
        let query = Query {
            projection,
            from: riffle_grammar::ast::Relation {
                source: riffle_grammar::ast::SourceRef {
                    name: Ident::new(ONE_ROW),
                    alias: None,
                },
                joins: Vec::new(),
            },
            window: None,
            selection: None,
            group_by: Vec::new(),
            partition_by: Vec::new(),
            having: None,
            emit: None,
            limit: None,
        };
        let plan = self.plan_stateless(&query, &[]).await?;
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            Vec::new(),
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(1)),
        )
        .map_err(|e| PlanError::Plan(e.to_string()))?;
        let (_, output) = plan.apply(&batch)?;
        Ok(output.columns().to_vec())
    }

    /// Our query as a sqlparser `SELECT` that DataFusion's `SqlToRel` plans.
    fn to_datafusion(&self, query: &Query) -> Result<SqlStatement, PlanError> {
        let template = sqlparser::parser::Parser::parse_sql(&GenericDialect, "SELECT 1 FROM t")
            .map_err(|e| PlanError::Plan(format!("internal: {e}")))?;
        let Some(SqlStatement::Query(mut sql_query)) = template.into_iter().next() else {
            return Err(PlanError::Plan("internal: no template query".into()));
        };
        let SetExpr::Select(select) = sql_query.body.as_mut() else {
            return Err(PlanError::Plan("internal: template is not a SELECT".into()));
        };
        select.projection = query.projection.clone();
        select.selection = query.selection.clone();
        if !query.group_by.is_empty() {
            select.group_by =
                sqlparser::ast::GroupByExpr::Expressions(query.group_by.clone(), Vec::new());
        }
        select.having = query.having.clone();
        rewrite::null_safe_comparisons(&mut select.projection, select.selection.as_mut());
        if let TableFactor::Table { name, alias, .. } = &mut select.from[0].relation {
            *name = sqlparser::ast::ObjectName::from(vec![query.from.source.name.clone()]);
            *alias = query
                .from
                .source
                .alias
                .clone()
                .map(|alias| sqlparser::ast::TableAlias {
                    explicit: false,
                    name: alias,
                    columns: Vec::new(),
                    at: None,
                });
        }
        let mut statement = SqlStatement::Query(sql_query);
        rewrite::for_datafusion(&mut statement, &self.table_functions.read())?;
        Ok(statement)
    }
}

/// DataFusion's refusal of a non-boolean `WHERE` in ksqlDB's words.
impl Planner {
    /// DataFusion's planner refuses arithmetic it cannot type before our checks see the
    /// expressions; each clause is planned alone to find the culprit and say so in ksqlDB's
    /// words (`Error in WHERE expression: … Unsupported arithmetic types. BOOLEAN DECIMAL`).
    async fn explain_planning_error(&self, error: DataFusionError, query: &Query) -> PlanError {
        let message = error.to_string();
        if !message.contains("Cannot coerce arithmetic expression")
            && !message.contains("Cannot get result type for arithmetic operation")
        {
            return non_boolean_filter(error, query);
        }
        let source = &query.from.source;
        let Ok(table) = self
            .context
            .table_provider(datafusion::common::TableReference::bare(
                source.name.value.clone(),
            ))
            .await
        else {
            return error.into();
        };
        let qualifier = source.alias.as_ref().unwrap_or(&source.name).value.clone();
        let Ok(schema) = DFSchema::try_from_qualified_schema(qualifier, &table.schema()) else {
            return error.into();
        };
        let state = self.context.state();
        let plan = |expr: &SqlExpr| {
            let sql = sqlparser::ast::ExprWithAlias {
                expr: expr.clone(),
                alias: None,
            };
            state.create_logical_expr_from_sql_expr(sql, &schema).ok()
        };
        // Arithmetic on a bare NULL first. DataFusion types `x + NULL` as
        // `x + CAST(NULL AS type of x)` and then finds no arithmetic for MAPs or ARRAYs, so
        // such a clause does not plan alone either; ksqlDB refuses the bare NULL. Found in
        // the clauses as DataFusion reads them (ksqlDB's `MAP(k := v)` rewritten, its
        // integer literals INTs).
        if let Ok(SqlStatement::Query(rewritten)) = self.to_datafusion(query)
            && let sqlparser::ast::SetExpr::Select(select) = rewritten.body.as_ref()
            && let Some(problem) =
                first_problem(select.selection.as_ref(), &select.projection, |expr| {
                    null_arithmetic(expr, &plan)
                        .map_or(Ok(()), |planned| check::check_arithmetic(&planned, &schema))
                })
        {
            return problem;
        }
        first_problem(query.selection.as_ref(), &query.projection, |expr| {
            plan(expr).map_or(Ok(()), |planned| check::check_arithmetic(&planned, &schema))
        })
        .unwrap_or_else(|| error.into())
    }
}

/// The first clause `check` refuses: the `WHERE` (its error said to be there), then the
/// selected expressions.
fn first_problem(
    selection: Option<&SqlExpr>,
    projection: &[SelectItem],
    check: impl Fn(&SqlExpr) -> Result<(), PlanError>,
) -> Option<PlanError> {
    if let Some(Err(problem)) = selection.map(&check) {
        return Some(problem.in_where());
    }
    projection.iter().find_map(|item| match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => check(expr).err(),
        _ => None,
    })
}

/// The first arithmetic on a bare `NULL` in `expr` (`MAP(1 := 'a') + NULL`), planned with
/// its other operand alone and the `NULL` left as written.
fn null_arithmetic(
    expr: &SqlExpr,
    plan: &impl Fn(&SqlExpr) -> Option<LogicalExpr>,
) -> Option<LogicalExpr> {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    use sqlparser::ast::{BinaryOperator, Value};
    let is_null = |e: &SqlExpr| matches!(e, SqlExpr::Value(v) if matches!(v.value, Value::Null));
    let mut found = None;
    let _ = sqlparser::ast::visit_expressions(expr, |e| {
        let SqlExpr::BinaryOp { left, op, right } = e else {
            return std::ops::ControlFlow::Continue(());
        };
        let op = match op {
            BinaryOperator::Plus => Operator::Plus,
            BinaryOperator::Minus => Operator::Minus,
            BinaryOperator::Multiply => Operator::Multiply,
            BinaryOperator::Divide => Operator::Divide,
            BinaryOperator::Modulo => Operator::Modulo,
            _ => return std::ops::ControlFlow::Continue(()),
        };
        let null = || {
            Some(LogicalExpr::Literal(
                datafusion::scalar::ScalarValue::Null,
                None,
            ))
        };
        let operands = match (is_null(left), is_null(right)) {
            (true, false) => null().zip(plan(right)),
            (false, true) => plan(left).zip(null()),
            _ => None,
        };
        match operands {
            Some((left, right)) => {
                found = Some(LogicalExpr::BinaryExpr(BinaryExpr::new(
                    Box::new(left),
                    op,
                    Box::new(right),
                )));
                std::ops::ControlFlow::Break(())
            }
            None => std::ops::ControlFlow::Continue(()),
        }
    });
    found
}

fn non_boolean_filter(error: DataFusionError, query: &Query) -> PlanError {
    let message = error.to_string();
    let (Some(_), Some(predicate)) = (
        message.find("Cannot create filter with non-boolean predicate"),
        &query.selection,
    ) else {
        return error.into();
    };
    let type_name = message
        .rsplit("returning ")
        .next()
        .and_then(|name| name.trim().parse::<arrow::datatypes::DataType>().ok())
        .and_then(|t| crate::types::SqlType::from_arrow(&t))
        .map_or_else(|| "UNKNOWN".to_string(), |t| t.to_string());
    let text = match predicate {
        SqlExpr::BinaryOp { .. } => format!("({predicate})"),
        other => other.to_string(),
    };
    PlanError::Plan(format!(
        "Type error in WHERE expression: Should evaluate to boolean but is {text} ({type_name}) \
         instead."
    ))
}

/// Names every select item as ksqlDB does: a column keeps its name, `a->b` is named `B`
/// (`B_1`, `B_2`… when a source column or another item has that name), any other unaliased
/// expression gets the next `KSQL_COL_n` no source column or item has.
fn name_columns(projection: Vec<SelectItem>, source_columns: &[String]) -> Vec<SelectItem> {
    let mut taken: std::collections::HashSet<String> = projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            SelectItem::UnnamedExpr(SqlExpr::Identifier(ident)) => Some(ident.value.clone()),
            _ => None,
        })
        .chain(source_columns.iter().cloned())
        .collect();
    let mut next = 0;
    projection
        .into_iter()
        .map(|item| {
            let SelectItem::UnnamedExpr(expr) = item else {
                return item;
            };
            let alias = match &expr {
                SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_) => {
                    return SelectItem::UnnamedExpr(expr);
                }
                SqlExpr::BinaryOp {
                    op: sqlparser::ast::BinaryOperator::Arrow,
                    right,
                    ..
                } => match right.as_ref() {
                    SqlExpr::Identifier(field) if !taken.contains(&field.value) => {
                        taken.insert(field.value.clone());
                        field.clone()
                    }
                    SqlExpr::Identifier(field) => (1..)
                        .map(|n| format!("{}_{n}", field.value))
                        .find(|candidate| taken.insert(candidate.clone()))
                        .map(Ident::new)
                        .unwrap_or_else(|| field.clone()),
                    _ => return SelectItem::UnnamedExpr(expr),
                },
                _ => loop {
                    let candidate = format!("KSQL_COL_{next}");
                    next += 1;
                    if taken.insert(candidate.clone()) {
                        break Ident::new(candidate);
                    }
                },
            };
            SelectItem::ExprWithAlias { expr, alias }
        })
        .collect()
}

/// A reference to the column `name`, quoted when DataFusion would otherwise read it as
/// something else (`@TIMESTAMP` is a variable unquoted).
pub fn column_ident(name: &str) -> Ident {
    if name.starts_with('@') {
        Ident::with_quote('`', name)
    } else {
        Ident::new(name)
    }
}

/// Replaces `*` and `source.*` with the columns they stand for.
fn expand_stars(projection: &[SelectItem], star_columns: &[String]) -> Vec<SelectItem> {
    let mut expanded = Vec::with_capacity(projection.len());
    for item in projection {
        match item {
            SelectItem::Wildcard(_) => expanded.extend(
                star_columns
                    .iter()
                    .map(|name| SelectItem::UnnamedExpr(SqlExpr::Identifier(column_ident(name)))),
            ),
            SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(qualifier),
                _,
            ) => expanded.extend(star_columns.iter().map(|name| {
                let mut parts: Vec<Ident> = qualifier
                    .0
                    .iter()
                    .filter_map(|part| part.as_ident().cloned())
                    .collect();
                parts.push(column_ident(name));
                SelectItem::ExprWithAlias {
                    expr: SqlExpr::CompoundIdentifier(parts),
                    alias: column_ident(name),
                }
            })),
            other => expanded.push(other.clone()),
        }
    }
    expanded
}

/// A planned SELECT taken apart: the projected expressions, over `input_schema` (the
/// source's columns) or, with table functions, over the exploded rows; the predicate.
struct Split<'a> {
    exprs: Vec<LogicalExpr>,
    filter: Option<LogicalExpr>,
    input_schema: &'a DFSchema,
    /// Table functions: the unnesting, and what it reads, computed from the source's rows.
    explode: Option<(&'a datafusion::logical_expr::Unnest, Vec<LogicalExpr>)>,
}

/// `Projection(Filter?(TableScan))`, or with table functions
/// `Projection(Unnest(Projection(Filter?(TableScan))))`.
fn split_projection(plan: &LogicalPlan) -> Result<Split<'_>, PlanError> {
    let LogicalPlan::Projection(projection) = plan else {
        return Err(PlanError::Plan(format!(
            "internal: expected a projection, got {}",
            plan.display()
        )));
    };
    let (inner, explode) = match projection.input.as_ref() {
        LogicalPlan::Unnest(unnest) => match unnest.input.as_ref() {
            LogicalPlan::Projection(inner) => {
                (inner.input.as_ref(), Some((unnest, inner.expr.clone())))
            }
            _ => return Err(PlanError::Unsupported("this use of table functions".into())),
        },
        input => (input, None),
    };
    let (filter, input_schema) = match inner {
        LogicalPlan::Filter(filter) if is_scan(&filter.input) => (
            Some(filter.predicate.clone()),
            filter.input.schema().as_ref(),
        ),
        input if is_scan(input) => (None, input.schema().as_ref()),
        // An aggregate function without GROUP BY makes an aggregation plan.
        _ => return Err(PlanError::Unsupported("aggregation".into())),
    };
    Ok(Split {
        exprs: projection.expr.clone(),
        filter,
        input_schema,
        explode,
    })
}

/// `expr` simplified by DataFusion: some functions (COALESCE, NVL) exist only as rewrites
/// the simplifier makes, and constants fold once instead of per batch. Folding runs a
/// function at planning time; a rewrite that fails or panics (LPAD to an absurd length) is
/// skipped, leaving the expression to fail per record.
fn simplified(expr: LogicalExpr, schema: &DFSchema) -> LogicalExpr {
    let simplifier = ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(Arc::new(schema.clone()))
            .build(),
    );
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        simplifier.simplify(expr.clone())
    }));
    match attempt {
        Ok(Ok(simplified)) => simplified,
        Ok(Err(_)) | Err(_) => expr,
    }
}

/// A scan of the source, maybe under its alias (`FROM input i`).
fn is_scan(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(_) => true,
        LogicalPlan::SubqueryAlias(alias) => is_scan(&alias.input),
        _ => false,
    }
}

impl StatelessPlan {
    /// Filters and projects one batch; returns the rows that passed the filter and their
    /// projection.
    pub fn apply(&self, batch: &RecordBatch) -> Result<(RecordBatch, RecordBatch), PlanError> {
        let batch = match &self.filter {
            Some(predicate) => {
                let mask = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
                let mask = arrow::array::AsArray::as_boolean_opt(&mask)
                    .ok_or_else(|| PlanError::Plan("WHERE must be a boolean expression".into()))?;
                arrow::compute::filter_record_batch(batch, mask)
                    .map_err(|e| PlanError::Plan(e.to_string()))?
            }
            None => batch.clone(),
        };
        let (batch, projected) = match &self.explode {
            Some(explode) => {
                let (source_rows, exploded) = explode.apply(&batch)?;
                let rows = arrow::compute::take_record_batch(&batch, &source_rows)?;
                (rows, exploded)
            }
            None => (batch.clone(), batch),
        };
        let columns = self
            .projection
            .iter()
            .map(|column| {
                column
                    .expr
                    .evaluate(&projected)?
                    .into_array(projected.num_rows())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| PlanError::Plan(e.to_string()))?;
        Ok((
            batch,
            with_value_scales(&self.projection, output, &projected),
        ))
    }

    /// [`Self::apply`] for one row on which something failed, as ksqlDB treats it: a
    /// `WHERE` that fails drops the row; a column that fails is NULL. Each failure (error
    /// or panic) is reported.
    pub fn apply_row(
        &self,
        row: &RecordBatch,
        report: &mut dyn FnMut(String),
    ) -> Option<(RecordBatch, RecordBatch)> {
        if let Some(predicate) = &self.filter
            && !holds_on_row(predicate, row, report)
        {
            return None;
        }
        let Some(explode) = &self.explode else {
            let output = project_row(&self.projection, &self.output_schema, row, report)?;
            return Some((
                row.clone(),
                with_value_scales(&self.projection, output, row),
            ));
        };
        let exploded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| explode.apply(row)));
        match exploded {
            Ok(Ok((source_rows, exploded))) => {
                let rows = match arrow::compute::take_record_batch(row, &source_rows) {
                    Ok(rows) => rows,
                    Err(error) => {
                        report(error.to_string());
                        return None;
                    }
                };
                let output = project_row(&self.projection, &self.output_schema, &exploded, report)?;
                Some((rows, with_value_scales(&self.projection, output, &exploded)))
            }
            Ok(Err(error)) => {
                report(error.to_string());
                None
            }
            Err(_) => {
                report("a table function failed unexpectedly".into());
                None
            }
        }
    }
}

/// `output` with the per-row scales of its columns that have them (see
/// [`ProjectedColumn::value_scale`]) after its own columns. A scale that cannot be computed
/// is left out: its column's values are then written at the type's scale.
fn with_value_scales(
    projection: &[ProjectedColumn],
    output: RecordBatch,
    input: &RecordBatch,
) -> RecordBatch {
    if projection.iter().all(|column| column.value_scale.is_none()) {
        return output;
    }
    let mut fields: Vec<arrow::datatypes::FieldRef> = output.schema().fields().to_vec();
    let mut columns = output.columns().to_vec();
    for column in projection {
        let Some(Ok(scales)) = column
            .value_scale
            .as_ref()
            .map(|e| guarded_evaluate(e, input))
        else {
            continue;
        };
        let name = value_scale_column(&column.name);
        fields.push(Arc::new(arrow::datatypes::Field::new(
            name,
            scales.data_type().clone(),
            true,
        )));
        columns.push(scales);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap_or(output)
}

/// Evaluates an expression over rows on which something failed: an error or a panic is
/// an error (a panicking function must not take the query down).
fn guarded_evaluate(
    expr: &Arc<dyn PhysicalExpr>,
    rows: &RecordBatch,
) -> Result<arrow::array::ArrayRef, DataFusionError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        expr.evaluate(rows)?.into_array(rows.num_rows())
    }))
    .unwrap_or_else(|_| {
        Err(DataFusionError::Execution(
            "a function failed unexpectedly".into(),
        ))
    })
}

/// Whether a condition (`WHERE`, `HAVING`) holds on one row; one that fails does not
/// hold, and the failure is reported.
pub(crate) fn holds_on_row(
    predicate: &Arc<dyn PhysicalExpr>,
    row: &RecordBatch,
    report: &mut dyn FnMut(String),
) -> bool {
    match guarded_evaluate(predicate, row) {
        Ok(mask) => arrow::array::AsArray::as_boolean_opt(&mask)
            .is_some_and(|m| arrow::array::Array::is_valid(m, 0) && m.value(0)),
        Err(error) => {
            report(error.to_string());
            false
        }
    }
}

/// Projects one row as ksqlDB does when something fails: a column that fails is NULL,
/// and each failure is reported.
pub(crate) fn project_row(
    projection: &[ProjectedColumn],
    schema: &SchemaRef,
    row: &RecordBatch,
    report: &mut dyn FnMut(String),
) -> Option<RecordBatch> {
    let columns = projection
        .iter()
        .zip(schema.fields())
        .map(
            |(column, field)| match guarded_evaluate(&column.expr, row) {
                Ok(array) => array,
                Err(error) => {
                    report(error.to_string());
                    arrow::array::new_null_array(field.data_type(), row.num_rows())
                }
            },
        )
        .collect();
    match RecordBatch::try_new(schema.clone(), columns) {
        Ok(output) => Some(output),
        Err(error) => {
            report(error.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray, StructArray};
    use arrow::datatypes::{DataType, Field, Fields, Int64Type};

    fn source() -> (SchemaRef, RecordBatch) {
        let address = Fields::from(vec![Field::new("CITY", DataType::Utf8, true)]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("ID", DataType::Utf8, true),
            Field::new("V", DataType::Int64, true),
            Field::new("ADDRESS", DataType::Struct(address.clone()), true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            Arc::new(Int64Array::from(vec![Some(1), Some(5), None])),
            Arc::new(StructArray::new(
                address,
                vec![Arc::new(StringArray::from(vec!["x", "y", "z"]))],
                None,
            )),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
        (schema, batch)
    }

    #[tokio::test]
    async fn projections_and_filters_run_on_batches() {
        let (schema, batch) = source();
        let planner = Planner::new();
        planner.register_source("S", schema).expect("registered");
        let statement = riffle_grammar::parse_statement(
            "SELECT id, v * 2 AS doubled, address->city AS city FROM s WHERE v > 1 EMIT CHANGES;",
        )
        .expect("parses");
        let riffle_grammar::Statement::Query(query) = statement else {
            panic!("a query")
        };
        let plan = planner.plan_stateless(&query, &[]).await.expect("plans");
        let names: Vec<&str> = plan.projection.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ID", "DOUBLED", "CITY"]);
        let sources: Vec<Option<&str>> = plan
            .projection
            .iter()
            .map(|c| c.source_column.as_deref())
            .collect();
        assert_eq!(sources, [Some("ID"), None, None]);
        let (_, out) = plan.apply(&batch).expect("runs");
        assert_eq!(out.num_rows(), 1);
        assert_eq!(out.column(0).as_string::<i32>().value(0), "b");
        assert_eq!(out.column(1).as_primitive::<Int64Type>().value(0), 10);
        assert_eq!(out.column(2).as_string::<i32>().value(0), "y");
    }

    #[tokio::test]
    async fn arithmetic_on_what_is_not_a_number_is_refused_in_ksqldb_words() {
        let (schema, _) = source();
        let planner = Planner::new();
        planner.register_source("S", schema).expect("registered");
        let refusal = async |sql: &str| {
            let riffle_grammar::Statement::Query(query) =
                riffle_grammar::parse_statement(sql).expect("parses")
            else {
                panic!("a query")
            };
            match planner.plan_stateless(&query, &[]).await {
                Ok(_) => panic!("{sql} was planned"),
                Err(error) => error.to_string(),
            }
        };
        assert_eq!(
            refusal("SELECT id FROM s WHERE TRUE + 1.5 EMIT CHANGES").await,
            "Error in WHERE expression: Error processing expression: (true + 1.5). Unsupported \
             arithmetic types. BOOLEAN DECIMAL"
        );
        assert_eq!(
            refusal("SELECT v + (v > 1) AS x FROM s EMIT CHANGES").await,
            "Error processing expression: (V + (V > 1)). Unsupported arithmetic \
             types. BIGINT BOOLEAN"
        );
        assert_eq!(
            refusal("SELECT v + NULL AS x FROM s EMIT CHANGES").await,
            "Error processing expression: (V + null). Arithmetic on types BIGINT and null are \
             not supported."
        );
        assert_eq!(
            refusal("SELECT MAP(1 := 'cat') + NULL AS x FROM s EMIT CHANGES").await,
            "Error processing expression: (MAP(1:='cat') + null). Arithmetic on types \
             MAP<INTEGER, STRING> and null are not supported."
        );
        assert_eq!(
            refusal("SELECT ARRAY[1, 2, 3] + NULL AS x FROM s EMIT CHANGES").await,
            "Error processing expression: (ARRAY[1, 2, 3] + null). Arithmetic on types \
             ARRAY<INTEGER> and null are not supported."
        );
    }

    #[tokio::test]
    async fn array_elements_take_ksqldb_common_type() {
        let (schema, batch) = source();
        let planner = Planner::new();
        planner.register_source("S", schema).expect("registered");
        let plan = |sql: &str| {
            let riffle_grammar::Statement::Query(query) =
                riffle_grammar::parse_statement(sql).expect("parses")
            else {
                panic!("a query")
            };
            let planner = planner.clone();
            async move { planner.plan_stateless(&query, &[]).await }
        };
        let numbers = plan("SELECT ARRAY[NULL, 10, '2e1', v] AS a FROM s EMIT CHANGES")
            .await
            .expect("plans");
        assert_eq!(
            numbers.output_schema.field(0).data_type(),
            &DataType::List(Arc::new(Field::new_list_field(
                DataType::Decimal128(19, 0),
                true
            )))
        );
        let (_, out) = numbers.apply(&batch).expect("runs");
        let first = out.column(0).as_list::<i32>().value(0);
        let values = first.as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(
            values.iter().collect::<Vec<_>>(),
            [None, Some(10), Some(20), Some(1)]
        );
        let refused = plan("SELECT ARRAY[1, 'not a number'] AS a FROM s EMIT CHANGES")
            .await
            .expect_err("not a number");
        assert!(
            refused
                .to_string()
                .contains(r#"invalid input syntax for type INTEGER: "not a number""#),
            "{refused}"
        );
        let structs =
            plan("SELECT ARRAY[STRUCT(x := v), STRUCT(y := id, x := v)] AS a FROM s EMIT CHANGES")
                .await
                .expect("plans");
        let (_, out) = structs.apply(&batch).expect("runs");
        let second_row = out.column(0).as_list::<i32>().value(1);
        let merged = second_row.as_struct();
        let names: Vec<&str> = merged.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["X", "Y"]);
        assert_eq!(
            merged
                .column(1)
                .as_string::<i32>()
                .iter()
                .collect::<Vec<_>>(),
            [None, Some("b")]
        );
    }

    /// GREATEST and LEAST over DECIMALs of different scales come with each row's own scale:
    /// the scale of the argument taken, the first of equal ones; none where all are NULL.
    #[tokio::test]
    async fn extremes_of_decimals_carry_the_scale_of_the_argument_taken() {
        use arrow::array::Decimal128Array;
        use arrow::datatypes::Int8Type;
        let schema = Arc::new(Schema::new(vec![
            Field::new("A", DataType::Decimal128(9, 2), true),
            Field::new("B", DataType::Decimal128(7, 6), true),
        ]));
        let decimals = |values: [Option<i128>; 4], p, s| -> ArrayRef {
            Arc::new(
                Decimal128Array::from(values.to_vec())
                    .with_precision_and_scale(p, s)
                    .expect("valid"),
            )
        };
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                decimals([Some(123456789), Some(50), None, None], 9, 2),
                decimals([Some(123456), Some(500000), Some(250000), None], 7, 6),
            ],
        )
        .expect("batch");
        let planner = Planner::new();
        planner.register_source("S", schema).expect("registered");
        let sql = "SELECT GREATEST(A, B) AS TOP, LEAST(B, A) AS BOTTOM, GREATEST(A, A) AS SAME \
                   FROM S EMIT CHANGES";
        let riffle_grammar::Statement::Query(query) =
            riffle_grammar::parse_statement(sql).expect("parses")
        else {
            panic!("a query")
        };
        let plan = planner.plan_stateless(&query, &[]).await.expect("plans");
        assert_eq!(plan.output_schema.fields().len(), 3);
        let (_, out) = plan.apply(&batch).expect("runs");
        let scales = |name: &str| -> Vec<Option<i8>> {
            out.column_by_name(&value_scale_column(name))
                .expect("scales")
                .as_primitive::<Int8Type>()
                .iter()
                .collect()
        };
        assert_eq!(scales("TOP"), [Some(2), Some(2), Some(6), None]);
        assert_eq!(scales("BOTTOM"), [Some(6), Some(6), Some(6), None]);
        assert!(out.column_by_name(&value_scale_column("SAME")).is_none());
        assert_eq!(out.num_columns(), 5);
    }

    #[tokio::test]
    async fn select_star_keeps_every_column() {
        let (schema, batch) = source();
        let planner = Planner::new();
        planner.register_source("S", schema).expect("registered");
        let riffle_grammar::Statement::Query(query) =
            riffle_grammar::parse_statement("SELECT * FROM S EMIT CHANGES").expect("parses")
        else {
            panic!("a query")
        };
        let columns = ["ID".to_string(), "V".to_string(), "ADDRESS".to_string()];
        let plan = planner
            .plan_stateless(&query, &columns)
            .await
            .expect("plans");
        let (_, out) = plan.apply(&batch).expect("runs");
        assert_eq!(out.num_columns(), 3);
        assert_eq!(out.num_rows(), 3);
        assert_eq!(out.column(1).null_count(), 1);
    }

    #[tokio::test]
    async fn unknown_columns_are_plan_errors() {
        let (schema, _) = source();
        let planner = Planner::new();
        planner.register_source("S", schema).expect("registered");
        let riffle_grammar::Statement::Query(query) =
            riffle_grammar::parse_statement("SELECT nope FROM S EMIT CHANGES").expect("parses")
        else {
            panic!("a query")
        };
        let error = planner
            .plan_stateless(&query, &[])
            .await
            .expect_err("no such column");
        assert!(error.to_string().contains("NOPE"), "{error}");
    }
}
