fn main() {
    println!("dibr");
}
