from django.urls import path

from contracts import views

app_name = "contracts"

urlpatterns = [
    path("contracts/", views.contract_list, name="contract-list"),
    path("contracts/<int:pk>/", views.contract_detail, name="contract-detail"),
    path("account/activity/", views.activity_list, name="activity"),
    path("account/billing/", views.billing_details, name="billing-details"),
    path("account/customer/", views.customer_switch, name="customer-switch"),
    path("account/no-customer/", views.no_customer, name="no-customer"),
]
