//! Parses the SQL given as arguments (or stdin) and prints the canonical text or the error.
use std::io::Read;

fn main() {
    let mut sql = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    if sql.is_empty() {
        let _ = std::io::stdin().read_to_string(&mut sql);
    }
    match riffle_grammar::parse_script(&sql) {
        Ok(statements) => {
            for parsed in statements {
                println!("{};", parsed.statement);
            }
        }
        Err(error) => println!("error: {error}"),
    }
}
