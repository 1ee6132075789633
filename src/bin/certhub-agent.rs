fn main() {
    println!("certhub-agent {}", certhub::agent::version());
}
