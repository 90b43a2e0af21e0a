//! The `meshinit` binary: everything lives in the library; see `lib.rs`.

fn main() {
    let env = |name: &str| std::env::var(name).ok();
    std::process::exit(meshinit::main_with(std::env::args_os().collect(), &env));
}
