//! The app's side of a checkout, as the simulator's scenario and the tests play it: the order it
//! creates before redirecting to Checkout.

use tokio_postgres::Client;
use uuid::Uuid;

/// An order as the app would create it before redirecting to Checkout.
#[derive(Debug, Clone, Default)]
pub struct NewOrder {
    pub session_id: Option<String>,
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
    pub status: Option<&'static str>,
    pub payment_intent: Option<String>,
}

/// Inserts an order; returns its id.
pub async fn insert_order(db: &Client, order: NewOrder) -> Uuid {
    let id = Uuid::new_v4();
    db.execute(
        "INSERT INTO orders (id, stripe_session_id, amount_total, currency, status, stripe_payment_intent_id)
         VALUES ($1, $2, $3, $4, COALESCE($5, 'pending'), $6)",
        &[&id, &order.session_id, &order.amount_total, &order.currency, &order.status, &order.payment_intent],
    )
    .await
    .expect("insert order");
    id
}

/// A connection to the app's database, its driver task spawned.
pub async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}
