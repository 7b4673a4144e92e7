//! `htpasswd`: Apache's command line, argon2id by default.

use std::io::{self, BufRead};
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use htpasswd::{Change, HashError, Htpasswd, HtpasswdFile};

/// Apache's exit statuses, so scripts written for it keep working.
mod status {
    pub const FILE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const MISMATCH: u8 = 3;
    pub const TOO_LONG: u8 = 5;
    pub const BAD_USER: u8 = 6;
    pub const INVALID_FILE: u8 = 7;
}

#[derive(Parser)]
#[command(
    name = "htpasswd",
    version,
    about = "Create and update htpasswd files, compatible with Apache's htpasswd.",
    long_about = "Create and update htpasswd files, compatible with Apache's htpasswd.\n\n\
        Unlike Apache, the default hash is argon2id (m=19456 KiB, t=2, p=1). \
        -B writes bcrypt ($2y$) as Apache does, at cost 10 unless -C says \
        otherwise (Apache's default is 5). MD5, crypt, SHA-1 and plain text \
        (-m -d -s -p) are not offered.",
    override_usage = "htpasswd [-ciBDv] [-C cost] passwordfile username\n       \
        htpasswd -b[cBDv] [-C cost] passwordfile username password\n       \
        htpasswd -n[iB] [-C cost] username\n       \
        htpasswd -nb[B] [-C cost] username password",
    after_help = "Exit status: 0 success, 1 file problem, 2 usage error, 3 passwords \
        differ or verification failed, 5 password too long, 6 bad or unknown \
        user name, 7 not a valid htpasswd file."
)]
struct Cli {
    /// Create the file; if it exists it is truncated
    #[arg(short = 'c', conflicts_with_all = ["stdout", "delete", "verify"])]
    create: bool,

    /// Print the result to stdout instead of updating a file
    #[arg(short = 'n', conflicts_with_all = ["delete", "verify"])]
    stdout: bool,

    /// Take the password from the command line (visible to other users!)
    #[arg(short = 'b', conflicts_with = "stdin")]
    batch: bool,

    /// Read the password from stdin without prompting
    #[arg(short = 'i')]
    stdin: bool,

    /// Hash with bcrypt ($2y$) instead of argon2id
    #[arg(short = 'B')]
    bcrypt: bool,

    /// Bcrypt cost, 4 to 31 [default: 10]
    #[arg(
        short = 'C',
        value_name = "cost",
        requires = "bcrypt",
        value_parser = clap::value_parser!(u32).range(4..=31)
    )]
    cost: Option<u32>,

    /// Delete the user
    #[arg(short = 'D', conflicts_with_all = ["batch", "stdin", "bcrypt", "verify"])]
    delete: bool,

    /// Verify the user's password
    #[arg(short = 'v')]
    verify: bool,

    /// Apache's MD5, crypt, SHA-1 and plain-text flags: refused with a hint
    #[arg(short = 'm', hide = true)]
    md5: bool,
    #[arg(short = 'd', hide = true)]
    crypt: bool,
    #[arg(short = 's', hide = true)]
    sha: bool,
    #[arg(short = 'p', hide = true)]
    plain: bool,

    /// [passwordfile] username [password]
    #[arg(value_name = "ARGS", required = true, num_args = 1..=3)]
    args: Vec<String>,
}

/// An error to report as `htpasswd: message` with an Apache exit status.
struct Failure {
    status: u8,
    message: String,
}

fn fail(status: u8, message: impl Into<String>) -> Failure {
    Failure {
        status,
        message: message.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("htpasswd: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    if cli.md5 || cli.crypt || cli.sha || cli.plain {
        return Err(fail(
            status::USAGE,
            "MD5, crypt, SHA-1 and plain-text hashes (-m -d -s -p) are not supported; \
             use the default argon2id or -B for bcrypt",
        ));
    }
    let expected = usize::from(!cli.stdout) + 1 + usize::from(cli.batch);
    if cli.args.len() != expected {
        Cli::command()
            .error(
                clap::error::ErrorKind::WrongNumberOfValues,
                format!(
                    "expected {expected} arguments ({}), got {}",
                    [
                        (!cli.stdout).then_some("passwordfile"),
                        Some("username"),
                        cli.batch.then_some("password"),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" "),
                    cli.args.len()
                ),
            )
            .exit();
    }
    let mut args = cli.args.iter().map(String::as_str);
    let path = if cli.stdout {
        None
    } else {
        args.next().map(Path::new)
    };
    let user = args.next().unwrap_or_default();
    let password_arg = args.next();

    htpasswd::validate_user(user).map_err(|e| fail(status::BAD_USER, e.to_string()))?;

    let Some(path) = path else {
        let hash = new_hash(cli, &new_password(cli, password_arg)?)?;
        println!("{user}:{hash}");
        return Ok(());
    };
    if cli.verify {
        return verify(cli, path, user, password_arg);
    }

    let mut file = if cli.create {
        HtpasswdFile::new()
    } else {
        read_file(path)?
    };
    if cli.delete {
        if file.remove(user) {
            eprintln!("Deleting password for user {user}");
            write(path, &file)
        } else {
            // Apache too reports this and succeeds, leaving the file alone.
            eprintln!("User {user} not found");
            Ok(())
        }
    } else {
        let hash = new_hash(cli, &new_password(cli, password_arg)?)?;
        match file.set(user, &hash) {
            Change::Added => eprintln!("Adding password for user {user}"),
            Change::Updated => eprintln!("Updating password for user {user}"),
        }
        write(path, &file)
    }
}

fn verify(cli: &Cli, path: &Path, user: &str, password_arg: Option<&str>) -> Result<(), Failure> {
    let users = Htpasswd::load(path).map_err(|e| match e {
        htpasswd::LoadError::Io { .. } => fail(status::FILE, e.to_string()),
        htpasswd::LoadError::Parse { .. } => fail(status::INVALID_FILE, e.to_string()),
    })?;
    if !users.contains(user) {
        return Err(match users.unsupported().iter().find(|e| e.user == user) {
            Some(entry) => fail(
                status::MISMATCH,
                format!(
                    "cannot verify user {user}: {} hashes (line {}) are not supported",
                    entry.scheme, entry.line
                ),
            ),
            None => fail(status::BAD_USER, format!("User {user} not found")),
        });
    }
    let password = match password_arg {
        Some(password) => password.to_owned(),
        None if cli.stdin => read_stdin_line()?,
        None => prompt("Enter password: ")?,
    };
    if users.verify(user, &password) {
        eprintln!("Password for user {user} correct.");
        Ok(())
    } else {
        Err(fail(status::MISMATCH, "password verification failed"))
    }
}

/// The file to edit; Apache refuses to create it without -c, so do we.
fn read_file(path: &Path) -> Result<HtpasswdFile, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            fail(
                status::FILE,
                format!(
                    "cannot modify file {}; use '-c' to create it",
                    path.display()
                ),
            )
        } else {
            fail(status::FILE, format!("cannot read {}: {e}", path.display()))
        }
    })?;
    HtpasswdFile::parse(&text).map_err(|e| {
        fail(
            status::INVALID_FILE,
            format!(
                "{} does not appear to be a valid htpasswd file: {e}",
                path.display()
            ),
        )
    })
}

fn write(path: &Path, file: &HtpasswdFile) -> Result<(), Failure> {
    htpasswd::write_atomic(path, file.to_string().as_bytes()).map_err(|e| {
        fail(
            status::FILE,
            format!("cannot write {}: {e}", path.display()),
        )
    })
}

fn new_password(cli: &Cli, password_arg: Option<&str>) -> Result<String, Failure> {
    if let Some(password) = password_arg {
        return Ok(password.to_owned());
    }
    if cli.stdin {
        return read_stdin_line();
    }
    let password = prompt("New password: ")?;
    if prompt("Re-type new password: ")? != password {
        return Err(fail(status::MISMATCH, "password verification error"));
    }
    Ok(password)
}

fn new_hash(cli: &Cli, password: &str) -> Result<String, Failure> {
    if !cli.bcrypt {
        return Ok(htpasswd::hash_argon2id(password));
    }
    let cost = cli.cost.unwrap_or(htpasswd::DEFAULT_BCRYPT_COST);
    htpasswd::hash_bcrypt(password, cost).map_err(|e| match e {
        HashError::PasswordTooLong(_) => fail(status::TOO_LONG, e.to_string()),
        HashError::Cost(_) => fail(status::USAGE, e.to_string()),
        HashError::Random(_) => fail(status::FILE, e.to_string()),
    })
}

/// Reads the terminal without echo; rpassword talks to /dev/tty directly.
fn prompt(text: &str) -> Result<String, Failure> {
    rpassword::prompt_password(text).map_err(|e| {
        fail(
            status::FILE,
            format!("cannot read a password from the terminal ({e}); use -i or -b"),
        )
    })
}

/// One line from stdin without its line ending, as Apache's -i reads it.
fn read_stdin_line() -> Result<String, Failure> {
    let mut line = String::new();
    let read = io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| fail(status::FILE, format!("cannot read stdin: {e}")))?;
    if read == 0 {
        return Err(fail(status::FILE, "no password on stdin"));
    }
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(line)
}
