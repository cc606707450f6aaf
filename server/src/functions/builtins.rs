//! DataFusion's functions that have ksqlDB's semantics, registered under ksqlDB's names and
//! taking only the argument types ksqlDB takes: DataFusion would convert a number to text
//! for `CONCAT_WS(1, 'a')` or `COALESCE(1, 'x')`, where ksqlDB refuses the call.
//!
//! A call's argument types are checked against the function's documented signatures
//! ([`super::signatures`]) as written, and stay as written in the plan: the conversions
//! DataFusion's function needs (an INT to its BIGINT) are made inside the call. (Were they
//! casts in the plan, DataFusion's later coercion passes would show the check the converted
//! types, which ksqlDB's signatures need not take.)

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{ExprSchema, Result, ScalarValue};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    Cast, ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TypeSignature,
};

use super::catalogue;
use super::udf::refused_parameters;

/// ksqlDB's names for DataFusion's functions, with the function each one is.
pub fn functions() -> Vec<ScalarUDF> {
    use datafusion::functions::{core, crypto, math, string, unicode};
    use datafusion::functions_nested::{
        array_has, concat, except, length, map_keys, map_values, min_max, set_ops, sort,
    };
    [
        ("concat", string::concat()),
        ("concat_ws", string::concat_ws()),
        ("initcap", unicode::initcap()),
        ("md5", crypto::md5()),
        ("replace", string::replace()),
        ("ucase", string::upper()),
        ("lcase", string::lower()),
        ("uuid", string::uuid()),
        ("abs", math::abs()),
        ("acos", math::acos()),
        ("asin", math::asin()),
        ("atan", math::atan()),
        ("atan2", math::atan2()),
        ("cbrt", math::cbrt()),
        ("cos", math::cos()),
        ("cosh", math::cosh()),
        ("cot", math::cot()),
        ("degrees", math::degrees()),
        ("exp", math::exp()),
        ("ln", math::ln()),
        ("pi", math::pi()),
        ("power", math::power()),
        ("radians", math::radians()),
        ("random", math::random()),
        ("sin", math::sin()),
        ("sinh", math::sinh()),
        ("tan", math::tan()),
        ("tanh", math::tanh()),
        ("array_concat", concat::array_concat_udf()),
        ("array_contains", array_has::array_has_udf()),
        ("array_distinct", set_ops::array_distinct_udf()),
        ("array_except", except::array_except_udf()),
        ("array_intersect", set_ops::array_intersect_udf()),
        ("array_length", length::array_length_udf()),
        ("array_max", min_max::array_max_udf()),
        ("array_min", min_max::array_min_udf()),
        ("array_sort", sort::array_sort_udf()),
        ("array_union", set_ops::array_union_udf()),
        ("map_keys", map_keys::map_keys_udf()),
        ("map_values", map_values::map_values_udf()),
        ("coalesce", core::coalesce()),
        // ksqlDB's IFNULL is COALESCE of two (DataFusion's `nvl` turns two arrays into
        // text).
        ("ifnull", core::coalesce()),
        ("nullif", core::nullif()),
    ]
    .into_iter()
    .map(|(name, inner)| {
        // The planner writes ARRAY_SORT with DataFusion's third argument, NULLs last as
        // ksqlDB sorts them (`plan::rewrite`).
        let planner_forms: &[&str] = match name {
            "array_sort" => &["array ARRAY<T>, direction STRING, nulls STRING"],
            _ => &[],
        };
        KsqlNamed::udf(name, inner, planner_forms)
    })
    .collect()
}

/// A DataFusion function under a ksqlDB name, refusing what ksqlDB refuses.
#[derive(Debug, PartialEq, Eq, Hash)]
struct KsqlNamed {
    name: &'static str,
    inner: Arc<ScalarUDF>,
    /// `UserDefined`, so that [`ScalarUDFImpl::coerce_types`] sees the argument types
    /// as written.
    signature: Signature,
    /// ksqlDB's forms of the function.
    forms: &'static [(&'static str, &'static str)],
    /// Argument lists the planner writes for ksqlDB's syntax, beside ksqlDB's forms.
    planner_forms: &'static [&'static str],
}

impl KsqlNamed {
    fn udf(
        name: &'static str,
        inner: Arc<ScalarUDF>,
        planner_forms: &'static [&'static str],
    ) -> ScalarUDF {
        let forms = catalogue::documented(name).map_or(&[][..], |f| f.signatures);
        let signature = Signature::new(TypeSignature::UserDefined, inner.signature().volatility);
        ScalarUDF::new_from_impl(KsqlNamed {
            name,
            inner,
            signature,
            forms,
            planner_forms,
        })
    }

    /// The argument fields DataFusion's function takes for these (its own coercion).
    fn inner_fields(&self, fields: &[FieldRef]) -> Result<Vec<FieldRef>> {
        datafusion::logical_expr::type_coercion::functions::fields_with_udf(
            fields,
            self.inner.as_ref(),
        )
    }

    /// [`Self::inner_fields`] for argument types.
    fn inner_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let fields: Vec<FieldRef> = types
            .iter()
            .map(|ty| Arc::new(Field::new("", ty.clone(), true)))
            .collect();
        Ok(self
            .inner_fields(&fields)?
            .iter()
            .map(|f| f.data_type().clone())
            .collect())
    }
}

impl ScalarUDFImpl for KsqlNamed {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// ksqlDB's check; the types stay as written (see the module's header).
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let accepted = super::signatures::accepted_by_any(self.forms, arg_types)
            || self
                .planner_forms
                .iter()
                .any(|form| super::signatures::accepts(form, arg_types));
        if !accepted {
            return Err(refused_parameters(self.name, arg_types));
        }
        // DataFusion's function must take them too, after its own conversions.
        self.inner_types(arg_types)
            .map_err(|_| refused_parameters(self.name, arg_types))?;
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(&self.inner_types(arg_types)?)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let fields = self.inner_fields(args.arg_fields)?;
        let scalars = args
            .scalar_arguments
            .iter()
            .zip(&fields)
            .map(|(scalar, field)| scalar.map(|s| s.cast_to(field.data_type())).transpose())
            .collect::<Result<Vec<Option<ScalarValue>>>>()?;
        let scalar_refs: Vec<Option<&ScalarValue>> = scalars.iter().map(Option::as_ref).collect();
        self.inner.return_field_from_args(ReturnFieldArgs {
            arg_fields: &fields,
            scalar_arguments: &scalar_refs,
        })
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        #[expect(deprecated)]
        self.inner.is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let fields = self.inner_fields(&args.arg_fields)?;
        let values = args
            .args
            .into_iter()
            .zip(&fields)
            .map(
                |(value, field)| match value.data_type() == *field.data_type() {
                    true => Ok(value),
                    false => value.cast_to(field.data_type(), None),
                },
            )
            .collect::<Result<Vec<_>>>()?;
        self.inner.invoke_with_args(ScalarFunctionArgs {
            args: values,
            arg_fields: fields,
            ..args
        })
    }

    /// DataFusion's simplification sees the arguments converted as its function takes
    /// them; a call it leaves alone keeps them as written.
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let Ok(types) = args
            .iter()
            .map(|arg| info.get_data_type(arg))
            .collect::<Result<Vec<_>>>()
        else {
            return Ok(ExprSimplifyResult::Original(args));
        };
        let taken = self.inner_types(&types)?;
        let converted = args
            .iter()
            .zip(types.iter().zip(taken))
            .map(|(arg, (written, taken))| match *written == taken {
                true => arg.clone(),
                false => Expr::Cast(Cast::new(Box::new(arg.clone()), taken)),
            })
            .collect();
        Ok(match self.inner.simplify(converted, info)? {
            ExprSimplifyResult::Original(_) => ExprSimplifyResult::Original(args),
            simplified => simplified,
        })
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.inner.propagate_constraints(interval, inputs)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<datafusion::logical_expr::StructFieldMapping> {
        self.inner.struct_field_mapping(literal_args)
    }
}
