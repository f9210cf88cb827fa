fn main() -> std::process::ExitCode {
    devbox::main()
}
