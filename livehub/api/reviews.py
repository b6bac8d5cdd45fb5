"""Product reviews: buyers whose order of the product was delivered write them, anyone reads them, the
seller answers each once, and an admin hides one. A product's `rating` sums up its listed reviews."""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub.api.models import Page, PageQuery, paragraph
from livehub.api.routing import Api, Model, Out, db, path_id, principal
from livehub.shop import reviews

api = Api("reviews")
admin_api = Api("admin")

ReviewText = paragraph(2000, required=False)
ReplyText = paragraph(2000, required=True)
Reason = paragraph(500, required=True)


class ReviewIn(Model):
    order_id: UUID = Field(description="your delivered order of this product")
    rating: Annotated[int, Field(ge=1, le=5)]
    text: ReviewText = ""


class ReplyIn(Model):
    text: ReplyText


class HideIn(Model):
    reason: Reason


class ReviewAuthorOut(Out):
    id: UUID
    display_name: str


class ReviewReplyOut(Out):
    text: str
    at: datetime


class ReviewOut(Out):
    id: UUID
    product_id: UUID
    rating: int
    text: str
    author: ReviewAuthorOut
    reply: ReviewReplyOut | None = Field(description="the seller's answer")
    hidden_at: datetime | None = Field(description="when an admin hid it; hidden reviews are not listed")
    created_at: datetime


class ReviewEnvelope(Out):
    review: ReviewOut


@api.post(
    "/api/products/{id}/reviews",
    auth="user",
    body=ReviewIn,
    response=ReviewEnvelope,
    status=201,
    changes_listings=True,
    errors={
        403: "the order is not yours, was not delivered, or has not this product",
        409: "this order's product is reviewed already",
    },
)
async def write_review(request: web.Request, body: ReviewIn) -> ReviewEnvelope:
    """Review a product you received: a rating of 1 to 5 and a few words, once per product and order"""
    review = await reviews.write(
        db(request), path_id(request), principal(request).user_id, body.order_id, body.rating, body.text
    )
    return ReviewEnvelope(review=review)


@api.get("/api/products/{id}/reviews", query=PageQuery, response=Page[ReviewOut])
async def list_reviews(request: web.Request, query: PageQuery) -> Page[ReviewOut]:
    """A product's reviews, newest first (hidden ones are left out)"""
    page = await reviews.list_reviews(db(request), path_id(request), limit=query.limit, cursor=query.cursor)
    return Page[ReviewOut].model_validate(page)


@api.post(
    "/api/products/{id}/reviews/{review_id}/reply",
    auth="seller",
    body=ReplyIn,
    response=ReviewEnvelope,
    errors={409: "the review has an answer already"},
)
async def reply_to_review(request: web.Request, body: ReplyIn) -> ReviewEnvelope:
    """Seller: answer a review of your product, once"""
    review = await reviews.reply(
        db(request), path_id(request), path_id(request, "review_id"), principal(request).user_id, body.text
    )
    return ReviewEnvelope(review=review)


@admin_api.post(
    "/api/admin/reviews/{id}/hide",
    auth="admin",
    body=HideIn,
    response=ReviewEnvelope,
    changes_listings=True,
    audit="review.hide",
    errors={409: "the review is hidden already"},
)
async def hide_review(request: web.Request, body: HideIn) -> ReviewEnvelope:
    """Hide a review: it leaves the product's reviews and rating"""
    review = await reviews.hide(db(request), path_id(request), principal(request).user_id, body.reason)
    return ReviewEnvelope(review=review)
