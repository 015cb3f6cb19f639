//! Prints a realistic user partition blob (fake tokens) as MSAL V3 JSON:
//! `cargo run -p tokencache --example sample_blob > examples/user-partition.json`.

fn main() {
    let (partition, _home) = tokencache::sample::user_partition(
        "9f4880d8-80ba-4c40-97bc-f7a23c703084",
        tokencache::sample::TENANT,
        1_800_000_000,
    )
    .expect("sample partition");
    println!("{}", String::from_utf8_lossy(&partition.to_vec()));
}
