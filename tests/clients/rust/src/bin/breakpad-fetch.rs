//! `breakpad-fetch <url> <cache dir> <tmp dir> <debug file> <debug id>`: rust-minidump's HTTP symbol
//! supplier locating a Breakpad `.sym` file, printing the local path.
use std::env;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use breakpad_symbols::{FileKind, HttpSymbolSupplier, SimpleModule, SymbolSupplier};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: breakpad-fetch <url> <cache dir> <tmp dir> <debug file> <debug id>");
        return ExitCode::from(2);
    }
    let supplier = HttpSymbolSupplier::new(
        vec![args[1].clone()],
        PathBuf::from(&args[2]),
        PathBuf::from(&args[3]),
        vec![],
        Duration::from_secs(60),
    );
    let Ok(debug_id) = debugid::DebugId::from_breakpad(&args[5]) else {
        eprintln!("bad debug id");
        return ExitCode::from(2);
    };
    let module = SimpleModule::new(&args[4], debug_id);
    match supplier.locate_file(&module, FileKind::BreakpadSym).await {
        Ok(path) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:?}");
            ExitCode::FAILURE
        }
    }
}
