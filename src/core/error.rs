//! The one error-chain helper: SDK errors hide their detail in the source chain, so logs print
//! the whole chain.

/// "outer: inner: innermost".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
