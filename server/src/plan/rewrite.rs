//! Rewrites our sqlparser AST into the forms DataFusion's `SqlToRel` plans.
//!
//! `s -> f` (ksqlDB's struct dereference, kept as a binary `->` so it prints back as
//! written) becomes the field access `s.f`.

use std::ops::ControlFlow;

use sqlparser::ast::{AccessExpr, BinaryOperator, Expr, Statement, VisitMut, VisitorMut};

/// Rewrites every expression of `statement` in place.
pub fn for_datafusion(statement: &mut Statement) {
    let _ = statement.visit(&mut DereferenceRewriter);
}

struct DereferenceRewriter;

impl VisitorMut for DereferenceRewriter {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        if let Expr::BinaryOp {
            op: BinaryOperator::Arrow,
            left,
            right,
        } = expr
            && let Expr::Identifier(_) = right.as_ref()
        {
            let field = std::mem::replace(right.as_mut(), Expr::value(sqlparser::ast::Value::Null));
            let root = std::mem::replace(left.as_mut(), Expr::value(sqlparser::ast::Value::Null));
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
