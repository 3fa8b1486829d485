fn main() {
    std::process::exit(speedrun::cli::main());
}
