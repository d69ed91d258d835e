use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(value_enum)]
    which: Which,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Which {
    /// The JSON Schema of asset definition files (schemas/asset.schema.json).
    Asset,
    /// The JSON Schema of `assets/alerts.toml` (schemas/alerts.schema.json).
    Alerts,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.which {
        Which::Asset => print!("{}", cairn_model::schema::asset_file_schema_json()),
        Which::Alerts => print!("{}", cairn_model::schema::alerts_file_schema_json()),
    }
    Ok(ExitCode::SUCCESS)
}
