//! The `meshinit` binary: everything lives in the library; see `lib.rs`.

/// Runs before `main` and before Rust's runtime sets SIGPIPE to ignored, so
/// the signal state meshinit inherited (which its children get back) is read
/// as the parent left it.
#[used]
#[link_section = ".init_array"]
static RECORD_INHERITED_SIGNALS: extern "C" fn() = record_inherited_signals;

extern "C" fn record_inherited_signals() {
    meshinit::record_inherited_signals();
}

fn main() {
    // A value that is not UTF-8 is kept (lossily) rather than dropped, so a
    // mangled MESHINIT_CONFIG is reported as unreadable, not silently unset.
    let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    std::process::exit(meshinit::main_with(std::env::args_os().collect(), &env));
}
