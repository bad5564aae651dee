//! `#[derive(RowCodec)]`: a projection's state struct as the columns of its read-model table.
//!
//! Each named field is one column, in declaration order, named after the field (or
//! `#[row(rename = "column")]`), of the type its Rust type maps to through
//! `fold::ColumnValue` (`Option<T>` is a nullable column). A field marked `#[row(json)]` may
//! be any serde type and is stored as `jsonb`. The generated code is what a hand-written
//! `RowCodec` would be: one push per field, no JSON on the way (except for `json` fields).

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Fields, LitStr};

/// Derives `fold::RowCodec` for a struct with named fields (see the crate docs).
#[proc_macro_derive(RowCodec, attributes(row))]
pub fn derive_row_codec(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// The path of the `fold` crate as the deriving crate sees it: the crate itself, a
/// dependency on `reproject-fold` (under whatever name), or the `reproject` facade's re-export.
fn fold_path() -> TokenStream2 {
    use proc_macro_crate::{crate_name, FoundCrate};
    match crate_name("reproject-fold") {
        Ok(FoundCrate::Itself) => quote!(crate),
        Ok(FoundCrate::Name(name)) => {
            let ident = syn::Ident::new(&name, Span::call_site());
            quote!(::#ident)
        }
        Err(_) => match crate_name("reproject") {
            Ok(FoundCrate::Name(name)) => {
                let ident = syn::Ident::new(&name, Span::call_site());
                quote!(::#ident::fold)
            }
            _ => quote!(::reproject::fold),
        },
    }
}

struct FieldSpec {
    ident: syn::Ident,
    ty: syn::Type,
    column: String,
    json: bool,
}

fn field_spec(field: &syn::Field) -> syn::Result<FieldSpec> {
    let ident = field.ident.clone().expect("named fields have idents");
    let mut spec = FieldSpec { column: ident.to_string(), ident, ty: field.ty.clone(), json: false };
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("row")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("json") {
                spec.json = true;
                Ok(())
            } else if meta.path.is_ident("rename") {
                spec.column = meta.value()?.parse::<LitStr>()?.value();
                Ok(())
            } else {
                Err(meta.error("expected `json` or `rename = \"column\"`"))
            }
        })?;
    }
    Ok(spec)
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => &named.named,
            _ => return Err(syn::Error::new_spanned(input, "RowCodec needs a struct with named fields")),
        },
        _ => return Err(syn::Error::new_spanned(input, "RowCodec can only be derived for a struct")),
    };
    let specs = fields.iter().map(field_spec).collect::<syn::Result<Vec<_>>>()?;
    let fold = fold_path();
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let columns = specs.iter().map(|f| {
        let (column, ty) = (&f.column, &f.ty);
        if f.json {
            quote!(#fold::Column { name: #column, ty: #fold::ColumnType::Jsonb, nullable: false })
        } else {
            quote!(#fold::Column {
                name: #column,
                ty: <#ty as #fold::ColumnValue>::TYPE,
                nullable: <#ty as #fold::ColumnValue>::NULLABLE,
            })
        }
    });
    let writes = specs.iter().map(|f| {
        let ident = &f.ident;
        if f.json {
            quote!(out.push(#fold::json_to_value(&self.#ident));)
        } else {
            quote!(out.push(#fold::ColumnValue::to_value(&self.#ident));)
        }
    });
    let reads = specs.iter().map(|f| {
        let (ident, column, ty) = (&f.ident, &f.column, &f.ty);
        if f.json {
            quote!(#ident: #fold::take(&mut values, #column, #fold::json_from_value::<#ty>)?,)
        } else {
            quote!(#ident: #fold::take(&mut values, #column, <#ty as #fold::ColumnValue>::from_value)?,)
        }
    });
    Ok(quote! {
        impl #impl_generics #fold::RowCodec for #name #ty_generics #where_clause {
            const COLUMNS: &'static [#fold::Column] = &[#(#columns),*];
            fn write_values(&self, out: &mut ::std::vec::Vec<#fold::Value>) {
                #(#writes)*
            }
            fn from_values(values: ::std::vec::Vec<#fold::Value>) -> ::std::result::Result<Self, ::std::string::String> {
                let mut values = values.into_iter();
                ::std::result::Result::Ok(Self { #(#reads)* })
            }
        }
    })
}
