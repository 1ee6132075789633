//! Brazilian taxpayer numbers as types: a CNPJ (company) or CPF (person), digits only, with
//! their check digits validated. A number whose check digits fail is kept and flagged, never
//! silently dropped.

use std::fmt;

use serde::Serialize;

fn digits(raw: &str) -> String {
    raw.chars().filter(char::is_ascii_digit).collect()
}

fn check_digit(digits: &[u8], weights: &[u32]) -> u8 {
    let sum: u32 = digits
        .iter()
        .zip(weights)
        .map(|(d, w)| u32::from(*d) * w)
        .sum();
    let r = sum % 11;
    if r < 2 { 0 } else { (11 - r) as u8 }
}

fn to_nums(s: &str) -> Vec<u8> {
    s.bytes().map(|b| b - b'0').collect()
}

/// A company's CNPJ: 14 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Cnpj(String);

impl Cnpj {
    /// Accepts punctuation (`12.345.678/0001-95`); `None` unless there are 14 digits.
    pub fn parse(raw: &str) -> Option<Self> {
        let d = digits(raw);
        (d.len() == 14).then_some(Self(d))
    }

    pub fn is_valid(&self) -> bool {
        let n = to_nums(&self.0);
        if n.iter().all(|d| *d == n[0]) {
            return false;
        }
        let w1 = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2];
        let w2 = [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2];
        check_digit(&n[..12], &w1) == n[12] && check_digit(&n[..13], &w2) == n[13]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cnpj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        write!(
            f,
            "{}.{}.{}/{}-{}",
            &d[..2],
            &d[2..5],
            &d[5..8],
            &d[8..12],
            &d[12..]
        )
    }
}

/// A person's CPF: 11 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Cpf(String);

impl Cpf {
    /// Accepts punctuation (`123.456.789-09`); `None` unless there are 11 digits.
    pub fn parse(raw: &str) -> Option<Self> {
        let d = digits(raw);
        (d.len() == 11).then_some(Self(d))
    }

    pub fn is_valid(&self) -> bool {
        let n = to_nums(&self.0);
        if n.iter().all(|d| *d == n[0]) {
            return false;
        }
        let w1: Vec<u32> = (2..=10).rev().collect();
        let w2: Vec<u32> = (2..=11).rev().collect();
        check_digit(&n[..9], &w1) == n[9] && check_digit(&n[..10], &w2) == n[10]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cpf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        write!(f, "{}.{}.{}-{}", &d[..3], &d[3..6], &d[6..9], &d[9..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cnpj_check_digits() {
        let c = Cnpj::parse("11.222.333/0001-81").unwrap();
        assert!(c.is_valid());
        assert_eq!(c.as_str(), "11222333000181");
        assert_eq!(c.to_string(), "11.222.333/0001-81");
        assert!(!Cnpj::parse("11222333000182").unwrap().is_valid());
        assert!(
            !Cnpj::parse("00000000000000").unwrap().is_valid(),
            "missing numbers are all zeros"
        );
        assert!(Cnpj::parse("1122233300018").is_none());
    }

    #[test]
    fn cpf_check_digits() {
        let c = Cpf::parse("529.982.247-25").unwrap();
        assert!(c.is_valid());
        assert_eq!(c.to_string(), "529.982.247-25");
        assert!(!Cpf::parse("52998224726").unwrap().is_valid());
        assert!(!Cpf::parse("11111111111").unwrap().is_valid());
        assert!(Cpf::parse("123").is_none());
    }
}
