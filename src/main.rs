fn main() {
    std::process::exit(pgproof::cli::main());
}
