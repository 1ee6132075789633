//! What an office's file name says: the password ("EMPRESA X LTDA Senha 1234.pfx",
//! "joao silva - senha_abc123.pfx", "(senha 1234)", "senha: 1234", any case), a clean display
//! name without it, and a redacted form for logs. The raw name is a secret: it holds a password.

use crate::crypto::SecretString;

const KEYWORD: &[u8] = b"senha";
/// Characters between the keyword and the password.
const SEPARATORS: &[char] = &[' ', ':', '=', '-', '_', '.', '#'];
/// Characters that end a password.
const CLOSERS: &[char] = &[')', ']', '}'];

/// A file name, understood.
pub struct FileName {
    /// The name to show everyone: extension and password part removed.
    pub display: String,
    /// The password the name carries, if any.
    pub password: Option<SecretString>,
    /// The name with the password replaced by `***`, for logs.
    pub redacted: String,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

/// Byte offset of the `senha` (ASCII, any case, starting a word) that introduces the password:
/// the last one followed by a separator ("X Senha senha123" has the password "senha123"),
/// else the last one ("X Senha1234").
fn find_keyword(stem: &str) -> Option<usize> {
    let bytes = stem.as_bytes();
    let mut found = (0..bytes.len().saturating_sub(KEYWORD.len() - 1))
        .rev()
        .filter(|&i| stem.is_char_boundary(i))
        .filter(|&i| {
            bytes[i..i + KEYWORD.len()].eq_ignore_ascii_case(KEYWORD)
                && stem[..i]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !is_word_char(c))
        });
    let last = found.next()?;
    let separated = |i: usize| {
        stem[i + KEYWORD.len()..]
            .chars()
            .next()
            .is_some_and(|c| SEPARATORS.contains(&c))
    };
    Some(
        std::iter::once(last)
            .chain(found)
            .find(|&i| separated(i))
            .unwrap_or(last),
    )
}

fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if matches!(name[i + 1..].to_ascii_lowercase().as_str(), "pfx" | "p12") => {
            name.split_at(i)
        }
        _ => (name, ""),
    }
}

fn tidy(s: &str) -> String {
    let trimmed = s.trim_matches(|c: char| c.is_whitespace() || "-_(:[{=".contains(c));
    trimmed.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn parse(file_name: &str) -> FileName {
    let (stem, ext) = split_extension(file_name);
    let Some(kw) = find_keyword(stem) else {
        return FileName {
            display: tidy(stem),
            password: None,
            redacted: file_name.to_owned(),
        };
    };
    let after_kw = kw + KEYWORD.len();
    let rest = &stem[after_kw..];
    let pw_start = after_kw + (rest.len() - rest.trim_start_matches(SEPARATORS).len());
    let pw_rest = &stem[pw_start..];
    let pw_len = pw_rest
        .find(|c: char| c.is_whitespace() || CLOSERS.contains(&c))
        .unwrap_or(pw_rest.len());
    if pw_len == 0 {
        return FileName {
            display: tidy(stem),
            password: None,
            redacted: file_name.to_owned(),
        };
    }
    let pw_end = pw_start + pw_len;
    let password = stem[pw_start..pw_end].to_owned();
    let mut tail = &stem[pw_end..];
    if let Some(c) = tail.chars().next().filter(|c| CLOSERS.contains(c)) {
        tail = &tail[c.len_utf8()..];
    }
    let head = &stem[..kw];
    let display = tidy(&format!("{} {}", tidy(head), tidy(tail)));
    let redacted = format!("{}***{}{}", &stem[..pw_start], &stem[pw_end..], ext);
    FileName {
        display,
        password: Some(SecretString::new(password)),
        redacted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, display: &str, password: Option<&str>) {
        let parsed = parse(name);
        assert_eq!(parsed.display, display, "{name}");
        assert_eq!(
            parsed.password.as_ref().map(|p| p.expose()),
            password,
            "{name}"
        );
        if let Some(pw) = password {
            assert!(!parsed.redacted.contains(pw), "{name}: {}", parsed.redacted);
            assert!(!parsed.display.contains(pw), "{name}");
        }
    }

    #[test]
    fn the_conventions_offices_use() {
        check(
            "EMPRESA X LTDA Senha 1234.pfx",
            "EMPRESA X LTDA",
            Some("1234"),
        );
        check(
            "joao silva - senha_abc123.pfx",
            "joao silva",
            Some("abc123"),
        );
        check(
            "MERCADO BOM PRECO (senha 1234).p12",
            "MERCADO BOM PRECO",
            Some("1234"),
        );
        check(
            "Padaria Pão Quente senha: 9x8y7z.PFX",
            "Padaria Pão Quente",
            Some("9x8y7z"),
        );
        check(
            "CONSTRUTORA ÁGUA SENHA-A1b2C3.pfx",
            "CONSTRUTORA ÁGUA",
            Some("A1b2C3"),
        );
        check("clinica SENHA_Zz@99!.pfx", "clinica", Some("Zz@99!"));
        check(
            "DUAS CHAVES Senha senha123.p12",
            "DUAS CHAVES",
            Some("senha123"),
        );
        check("MERCADO Senha1234.pfx", "MERCADO", Some("1234"));
        check(
            "Senha 4321 Oficina Mecânica.pfx",
            "Oficina Mecânica",
            Some("4321"),
        );
        check(
            "ACME [senha=acme2024] 2026.pfx",
            "ACME 2026",
            Some("acme2024"),
        );
    }

    #[test]
    fn names_without_a_password() {
        check("EMPRESA SEM SENHA.pfx", "EMPRESA SEM SENHA", None);
        check("certificado.pfx", "certificado", None);
        check("Contrasenhado 123.pfx", "Contrasenhado 123", None);
        check("senha.pfx", "senha", None);
        let p = parse("plain.pfx");
        assert_eq!(p.redacted, "plain.pfx");
    }

    #[test]
    fn redacted_form_keeps_the_shape() {
        assert_eq!(
            parse("EMPRESA X LTDA Senha 1234.pfx").redacted,
            "EMPRESA X LTDA Senha ***.pfx"
        );
        assert_eq!(parse("(senha 1234).p12").redacted, "(senha ***).p12");
    }
}
