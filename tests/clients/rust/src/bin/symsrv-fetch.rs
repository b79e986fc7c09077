//! `symsrv-fetch <_NT_SYMBOL_PATH> <name> <id>`: samply's `symsrv` downloader, printing the local path.
use std::env;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: symsrv-fetch <symbol path> <file name> <id>");
        return ExitCode::from(2);
    }
    let downloader = symsrv::SymsrvDownloader::new(symsrv::parse_nt_symbol_path(&args[1]));
    match downloader.get_file(&args[2], &args[3]).await {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
