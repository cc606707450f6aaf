//! Rewrites our sqlparser AST into the forms DataFusion's `SqlToRel` plans.
//!
//! `s -> f` (ksqlDB's struct dereference, kept as a binary `->` so it prints back as
//! written) becomes the field access `s.f`; `STRUCT(a := x)` becomes `named_struct('A', x)`
//! and `MAP(k := v)` becomes `make_map(k, v)`.

use std::ops::ControlFlow;

use sqlparser::ast::{
    AccessExpr, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArgOperator,
    FunctionArguments, Ident, ObjectName, Statement, Value, VisitMut, VisitorMut,
};

/// Rewrites every expression of `statement` in place.
pub fn for_datafusion(statement: &mut Statement) {
    let _ = statement.visit(&mut DereferenceRewriter);
}

struct DereferenceRewriter;

impl VisitorMut for DereferenceRewriter {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        rewrite_constructor(expr);
        if let Expr::BinaryOp {
            op: BinaryOperator::Arrow,
            left,
            right,
        } = expr
            && let Expr::Identifier(_) = right.as_ref()
        {
            let Expr::Identifier(name) =
                std::mem::replace(right.as_mut(), Expr::value(Value::Null))
            else {
                unreachable!("checked above")
            };
            // A string field, so that DataFusion never reads `s->b` as column `b` of a
            // source named `s`.
            let field = Expr::value(Value::SingleQuotedString(name.value));
            let root = std::mem::replace(left.as_mut(), Expr::value(Value::Null));
            *expr = match root {
                // Extend an existing chain: `a->b->c` is one access path.
                Expr::CompoundFieldAccess {
                    root,
                    mut access_chain,
                } => {
                    access_chain.push(AccessExpr::Dot(field));
                    Expr::CompoundFieldAccess { root, access_chain }
                }
                root => Expr::CompoundFieldAccess {
                    root: Box::new(root),
                    access_chain: vec![AccessExpr::Dot(field)],
                },
            };
        }
        ControlFlow::Continue(())
    }
}

/// `STRUCT(A := x, …)` → `named_struct('A', x, …)`; `MAP(k := v, …)` → `make_map(k, v, …)`.
fn rewrite_constructor(expr: &mut Expr) {
    let Expr::Function(function) = expr else {
        return;
    };
    let name = function.name.to_string().to_uppercase();
    let target = match name.as_str() {
        "STRUCT" => "named_struct",
        "MAP" => "make_map",
        _ => return,
    };
    let FunctionArguments::List(list) = &mut function.args else {
        return;
    };
    let mut args = Vec::with_capacity(list.args.len() * 2);
    for arg in list.args.drain(..) {
        match arg {
            FunctionArg::ExprNamed {
                name,
                arg: FunctionArgExpr::Expr(value),
                operator: FunctionArgOperator::Assignment,
            } => {
                let key = match (target, name) {
                    ("named_struct", Expr::Identifier(field)) => {
                        Expr::value(Value::SingleQuotedString(field.value))
                    }
                    (_, key) => key,
                };
                args.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(key)));
                args.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(value)));
            }
            other => args.push(other),
        }
    }
    list.args = args;
    function.name = ObjectName::from(vec![Ident::new(target)]);
}
