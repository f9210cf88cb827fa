//! `#[test]` for devbox's test binary (`tests/cli`, `harness = false`). It keeps the test
//! function as written and registers it with the harness in `tests/cli/harness.rs`, which
//! can report a test as skipped at run time (an engine, tool or variable the test needs is
//! missing) instead of passing it. Brought into scope by `#[macro_use]` at the test
//! crate's root, so test files write the ordinary `#[test]`.

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, Expr, ItemFn, Lit, Meta};

#[proc_macro_attribute]
pub fn test(args: TokenStream, input: TokenStream) -> TokenStream {
    if !args.is_empty() {
        return syn::Error::new(proc_macro2::Span::call_site(), "#[test] takes no arguments")
            .to_compile_error()
            .into();
    }
    let mut f = parse_macro_input!(input as ItemFn);
    let mut ignored = quote!(None);
    let mut unsupported = None;
    f.attrs.retain(|a| {
        if a.path().is_ident("ignore") {
            let reason = match &a.meta {
                Meta::NameValue(nv) => match &nv.value {
                    Expr::Lit(l) => match &l.lit {
                        Lit::Str(s) => Some(s.value()),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            };
            match reason {
                Some(r) => ignored = quote!(Some(#r)),
                None => {
                    unsupported = Some(syn::Error::new_spanned(
                        a,
                        "give the reason: #[ignore = \"why\"]",
                    ))
                }
            }
            return false;
        }
        if a.path().is_ident("should_panic") {
            unsupported = Some(syn::Error::new_spanned(
                a,
                "#[should_panic] is not supported here: catch the panic and assert on it",
            ));
        }
        true
    });
    if let Some(e) = unsupported {
        return e.to_compile_error().into();
    }
    if !f.sig.inputs.is_empty() || !matches!(f.sig.output, syn::ReturnType::Default) {
        return syn::Error::new_spanned(&f.sig, "a test takes nothing and returns ()")
            .to_compile_error()
            .into();
    }
    let ident = &f.sig.ident;
    let name = ident.to_string();
    quote! {
        #f
        ::inventory::submit! {
            crate::harness::Case {
                module: ::core::module_path!(),
                name: #name,
                run: #ident,
                ignored: #ignored,
            }
        }
    }
    .into()
}
