//! ksqlDB's meaning of operators that DataFusion reads otherwise, as expression planners
//! consulted while SQL becomes a logical plan: [`KsqlOperators`]: `+` between two strings
//! concatenates them (`'a' + 'b'` is `'ab'`; NULL on either side gives NULL). (`ARRAY[…]`
//! is `functions::array_constructor`.)

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, Operator};
use sqlparser::ast::BinaryOperator;

#[derive(Debug)]
pub struct KsqlOperators;

impl ExprPlanner for KsqlOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let is_text = |e: &Expr| {
            matches!(
                e.get_type(schema),
                Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            )
        };
        if expr.op == BinaryOperator::Plus && is_text(&expr.left) && is_text(&expr.right) {
            return Ok(PlannerResult::Planned(Expr::BinaryExpr(BinaryExpr::new(
                Box::new(expr.left),
                Operator::StringConcat,
                Box::new(expr.right),
            ))));
        }
        Ok(PlannerResult::Original(expr))
    }
}

/// The planners, in the order DataFusion consults them: ours after DataFusion's own.
pub fn with_ksql_planners(defaults: Vec<Arc<dyn ExprPlanner>>) -> Vec<Arc<dyn ExprPlanner>> {
    let mut planners = defaults;
    planners.push(Arc::new(KsqlOperators));
    planners
}
